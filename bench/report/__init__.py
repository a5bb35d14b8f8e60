"""Reports: the side-by-side tables (terminal and HTML), plots, and the HTML page."""
