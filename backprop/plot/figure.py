"""One place that imports matplotlib, with a clear message when it is missing."""


def pyplot():
    try:
        import matplotlib
    except ImportError:
        raise ImportError("plotting needs matplotlib: pip install 'backprop[plot]'") from None
    import os
    if not os.environ.get("DISPLAY") and not os.environ.get("MPLBACKEND"):
        matplotlib.use("Agg")  # headless machines: render to files
    import matplotlib.pyplot as plt
    return plt


def new(ncols=1, nrows=1, width=5.5, height=4.2, **kwargs):
    plt = pyplot()
    figure, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False, **kwargs)
    return figure, axes


def save(figure, path, dpi=110):
    figure.savefig(path, dpi=dpi, bbox_inches="tight")
    pyplot().close(figure)
