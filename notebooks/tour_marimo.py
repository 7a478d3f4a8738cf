"""A short neuronwidgets tour in marimo: one neuron of MiniLM over two sentences, as a TokenHeatmap.

Run it with `marimo edit notebooks/tour_marimo.py` (or `marimo run` for the app view). The widget is an
anywidget, so marimo renders it without any extension; `mo.ui.anywidget` makes its traits reactive: pick
another neuron in the heatmap and the cell below follows.
"""

import marimo

__generated_with = "0.25.2"
app = marimo.App(width="medium")


@app.cell
def _():
    import marimo as mo

    import neuronwidgets as nw

    return mo, nw


@app.cell
def _(mo):
    mo.md("""
    # neuronwidgets in marimo

    Words coloured by one MLP neuron of MiniLM (purple negative, orange positive). Change the neuron
    or the layer in the widget: the line under it is computed from the widget's state in Python.
    """)
    return


@app.cell
def _(mo, nw):
    model = nw.load_model("minilm")
    texts = ["A wonderful, moving film!", "The movie was not bad at all."]
    heatmap = mo.ui.anywidget(
        nw.TokenHeatmap.from_model(model, texts, neuron="layer.3.mlp:117", layers=[2, 3], components="mlp")
    )
    heatmap  # noqa: B018 (marimo shows the last expression of a cell)
    return (heatmap,)


@app.cell
def _(heatmap, mo):
    mo.md(f"Python sees neuron **{heatmap.value['neuron']}** ({len(heatmap.value['tokens'])} sentences).")
    return


if __name__ == "__main__":
    app.run()
