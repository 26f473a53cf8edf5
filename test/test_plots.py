"""The report plots (OpenCV only): tick labels a reader can read, nothing drawn over the data."""
import numpy as np

from sam2_ros.tools import plots

WHITE = 255


def test_tick_labels_share_one_format_per_axis():
    assert plots.tick_labels([0, 2500, 5000, 7500, 10000, 12500]) == \
        ['0', '2500', '5000', '7500', '10000', '12500']  # not '1e+04' beside '5000'
    assert plots.tick_labels([0, 0.25, 0.5, 0.75, 1.0]) == ['0.00', '0.25', '0.50', '0.75', '1.00']
    assert plots.tick_labels([0, 0.5, 1.0, 1.5]) == ['0.0', '0.5', '1.0', '1.5']
    assert plots.tick_labels([210, 220, 230]) == ['210', '220', '230']
    big = plots.tick_labels([0, 2e6, 4e6])
    assert big[0] == '0' and all('e' in label for label in big[1:])


def _plot_area(img):
    """Rows, columns of the plot's frame (the dark rectangle): top, bottom, left, right."""
    dark = (img.max(-1) < 100)
    rows = np.flatnonzero(dark[:, plots._LEFT])
    return rows.min(), rows.max(), plots._LEFT, plots._W - plots._RIGHT


def test_legend_sits_above_the_plot_not_over_the_line():
    # a flat line near the top of its range, where the old legend was drawn over it
    img = plots.line_plot(None, {'held state': (list(range(40)), [2.4] * 40)}, 'memory', 'frame', 'MiB')
    top, _, left, right = _plot_area(img)
    legend_color = plots._color('state', 0)
    ys, xs = np.nonzero((img == legend_color).all(-1))
    assert ys.size and (ys < top).any()  # the legend's swatch, above the frame
    inside = img[top + 1:, left + 1:right]
    text_dark = (inside.max(-1) < 60) & (np.ptp(inside, axis=-1) < 10)
    assert not text_dark[:20].any()  # no legend text in the plot's top rows


def test_histogram_marker_labels_are_above_the_bars():
    values = list(np.random.default_rng(0).normal(230, 15, 9))
    img = plots.histogram(None, values, 'latency', 'ms',
                          markers={'p50': float(np.percentile(values, 50)),
                                   'p95': float(np.percentile(values, 95))})
    top, _, left, right = _plot_area(img)
    p50, p95 = (14, 127, 255), (40, 39, 214)
    for color in (p50, p95):
        ys, xs = np.nonzero((np.abs(img.astype(int) - color).sum(-1) < 60))
        # the label (many pixels in a row above the frame) and the marker line below it
        assert (ys < top).sum() > 10 and (ys > top).any()
        assert xs[ys < top].max() < plots._W  # inside the image
    # the two labels do not overlap: their pixel columns above the frame are disjoint
    cols = [set(np.nonzero((np.abs(img[:top].astype(int) - c).sum(-1) < 60))[1]) for c in (p50, p95)]
    assert not cols[0] & cols[1]


def test_frame_axes_tick_whole_frames_only():
    assert plots.nice_ticks(0, 3, 8, integer=True) == [0, 1, 2, 3]
    assert all(float(t).is_integer() for t in plots.nice_ticks(0, 17, 8, integer=True))
    assert plots.nice_ticks(0, 3, 8) == [0, 0.5, 1, 1.5, 2, 2.5, 3]  # real-valued axes keep halves
