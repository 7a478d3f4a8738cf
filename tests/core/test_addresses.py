import pytest

from neuronwidgets.core import NeuronAddress, Site, parse_neuron, parse_neurons, parse_site


@pytest.mark.parametrize(
    "text, layer, component",
    [("embed.resid", -1, "resid"), ("layer.0.resid", 0, "resid"), ("layer.11.mlp", 11, "mlp")],
)
def test_site_round_trip(text: str, layer: int, component: str) -> None:
    site = parse_site(text)
    assert site == Site(layer, component)
    assert site.name == text == str(site)


def test_neuron_round_trip() -> None:
    n = parse_neuron("layer.3.mlp:117")
    assert n == NeuronAddress(Site(3, "mlp"), 117)
    assert n.name == "layer.3.mlp:117" and n.layer == 3 and n.component == "mlp"
    assert parse_neuron(" embed.resid:42 ").name == "embed.resid:42"
    assert parse_neuron(n) is n


@pytest.mark.parametrize(
    "bad, message",
    [
        ("layer.3.attn:1", "unknown component 'attn'"),
        ("embed.mlp:1", "only have a residual stream"),
        ("layer.3.mlp", "expected '<site>:<index>'"),
        ("layer.3.mlp:-1", "expected '<site>:<index>'"),
        ("layer3.mlp:1", "cannot parse site"),
        ("layer.3.mlp:x", "expected '<site>:<index>'"),
    ],
)
def test_parse_errors_say_what_is_expected(bad: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_neuron(bad)


def test_type_errors() -> None:
    with pytest.raises(TypeError):
        parse_neuron(3)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        parse_site(None)  # type: ignore[arg-type]


def test_parse_neurons_keeps_order_and_rejects_duplicates() -> None:
    assert [n.name for n in parse_neurons(["layer.1.mlp:2", "embed.resid:0"])] == [
        "layer.1.mlp:2",
        "embed.resid:0",
    ]
    assert len(parse_neurons("layer.1.mlp:2")) == 1
    with pytest.raises(ValueError, match="listed twice"):
        parse_neurons(["layer.1.mlp:2", "layer.1.mlp:2"])


def test_addresses_sort_in_a_stable_order() -> None:
    names = ["layer.2.resid:1", "embed.resid:5", "layer.0.mlp:3", "layer.0.mlp:1"]
    assert [n.name for n in sorted(parse_neurons(names))] == [
        "embed.resid:5",
        "layer.0.mlp:1",
        "layer.0.mlp:3",
        "layer.2.resid:1",
    ]
