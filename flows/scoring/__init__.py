"""Points that learn from outcomes: the feature matrix, the fit, and the proposed seeds."""
