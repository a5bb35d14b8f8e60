"""Reports: the side-by-side tables (one model for `fanout bench` and `fanout report`), the runs compared, plots,
the terminal report and the HTML page."""
