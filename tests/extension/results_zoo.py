"""One small instance of every public result type of ``neuronwidgets.core``, built from a tiny random
causal LM and synthetic activations (seconds, no embedded model): the subjects of the result contract."""

from __future__ import annotations

from typing import Any

import numpy as np

import neuronwidgets.core as c


def build_results(lm: c.ModelHandle) -> dict[str, Any]:
    from synthetic_acts import make_activations, random_corpus

    corpus = random_corpus(40, seed=1)
    n = corpus.num_words
    rng = np.random.default_rng(0)
    upos = corpus.flat_labels("upos")
    planted = np.array([1.0 if u == "NOUN" else 0.0 for u in upos])
    arrays = {
        "layer.0.mlp": rng.normal(size=(n, 6)).astype(np.float32),
        "layer.1.mlp": np.column_stack(
            [planted * 3 + rng.normal(scale=0.1, size=n), rng.normal(size=(n, 5))]
        ).astype(np.float32),
    }
    acts = make_activations(corpus, arrays, 10)
    other = make_activations(corpus, {"layer.0.mlp": arrays["layer.1.mlp"][:, ::-1].copy()}, 10)
    out: dict[str, Any] = {"Activations": acts, "Corpus": corpus}
    out["ActivationStatistics"] = c.extract_statistics(lm, corpus[:6], layers=[0], k=2, sample=16)
    probe = c.train_probe(acts, upos, control=True, baselines=True, progress=False)
    out["ProbeResult"] = probe
    out["Probe"] = probe.probe
    out["ProbeScores"] = probe.test
    out["Split"] = probe.split
    ranking = c.rank_weight_mass(probe)
    out["NeuronRanking"] = ranking
    out["LayerwiseProbes"] = c.train_layerwise_probes(acts, upos, progress=False)
    out["RankingAblation"] = c.evaluate_ranking(probe, ranking, acts, upos, percents=(10, 50, 100), draws=2)
    out["MinimalSubset"] = c.train_minimal_probe(acts, upos, ranking, reference=probe, target=0.5)
    out["NeuronClusters"] = c.cluster_neurons(acts)
    out["RedundancyProbes"] = c.train_redundancy_probes(acts, upos, thresholds=(0.3,))
    out["SimilarityMatrix"] = c.representation_similarity(acts, other)
    out["ClusterProbe"] = c.cluster_probe(acts, upos, k=3)
    concepts = c.Concepts.from_corpus(corpus, words=20, min_count=2)
    out["Concepts"] = concepts
    top = c.top_activations(acts, k=5, progress=False)
    out["TopActivations"] = top
    out["QuantileSamples"] = c.quantile_samples(acts, "layer.1.mlp:0", quantiles=4, per_bin=2)
    out["WordTypeSummary"] = c.word_types(acts, "layer.1.mlp:0", min_count=1)
    alignment = c.align_concepts(acts, concepts, thresholds=top, progress=False)
    out["ConceptAlignment"] = alignment
    formulas = c.explain_neurons(
        acts, concepts, ["layer.1.mlp:0", "layer.0.mlp:1"], thresholds=top, max_length=2
    )
    out["CompositionalExplanations"] = formulas
    out["FormulaExplanation"] = formulas[0]
    out["Formula"] = c.Formula.parse("NOUN AND NOT VERB")

    text = "the cat sat on the mat"
    out["Prediction"] = c.predict(lm, text)
    out["Generation"] = c.generate(lm, text, max_new_tokens=3)
    neurons = ["layer.1.mlp:1", "layer.1.mlp:2"]
    intervention = c.Intervention.zero(neurons)
    out["Intervention"] = intervention
    out["InterventionEffect"] = c.measure_effect(lm, [text, "a dog ran"], intervention)
    out["AblationComparison"] = c.compare_ablations(lm, [text], neurons, 1, n_random=2)
    attribution = c.attribute_tokens(lm, text, method="saliency")
    out["TokenAttribution"] = attribution
    out["FaithfulnessCurves"] = c.faithfulness_curves(lm, attribution, n_random=2)
    out["FaithfulnessComparison"] = c.compare_faithfulness(lm, text, ["saliency", "occlusion"], n_random=2)
    out["LayerAttribution"] = c.attribute_layers(lm, text, n_steps=4)
    out["TokenInteractions"] = c.attribute_interactions(lm, "the cat sat", n_steps=4)
    lm_ranking = c.attribute_neurons(lm, text, n_steps=4)
    lm_alignment = {n: "NOUN" for n in lm_ranking.neurons[:3]}
    by_concept = c.aggregate_by_concept(lm_ranking, lm_alignment, min_score=0.0)
    out["ConceptAttribution"] = by_concept
    out["ConceptAblation"] = c.check_concept_ablation(lm, [text], by_concept, "NOUN", n_random=2)
    clean, corrupt = "Paris is the capital of", "Berl is the capital of"
    top2 = lm.model(**lm.encode([clean]), use_cache=False).logits[0, -1].topk(2).indices
    t, f = int(top2[0]), int(top2[1])
    out["PatchingResult"] = c.patch(lm, clean, corrupt, layers=[0, 1], target=t, foil=f)
    out["AttributionPatching"] = c.attribution_patch(lm, clean, corrupt, layers=[0, 1], target=t, foil=f)
    k = 3  # a mediation result by hand: mediate() needs single-token profession words (SmolLM2 in its tests)
    out["MediationResult"] = c.MediationResult(
        cases=("nurse/she", "engineer/he"),
        y_null=np.array([0.5, 0.8]),
        y_set=np.array([0.6, 0.7]),
        te=np.array([0.2, -0.125]),
        head_nie=np.zeros((1, 2)),
        head_nde=np.zeros((1, 2)),
        neuron_layers=(1,),
        neuron_nie=rng.normal(size=(1, k)),
        neuron_nde=rng.normal(size=(1, k)),
        neurons=c.NeuronRanking.from_scores(
            [f"layer.1.mlp_out:{i}" for i in range(k)], np.arange(k, 0, -1.0), method="nie"
        ),
    )
    out["ModelHandle"] = lm
    out["NeuronAddress"] = c.parse_neuron("layer.1.mlp:3")
    out["Site"] = c.parse_site("layer.1.mlp")
    return out
