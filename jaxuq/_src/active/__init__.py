"""Active learning with MC dropout: acquisition functions and the acquisition loop."""
