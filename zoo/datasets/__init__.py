"""Small evaluation data the zoo ships or reads from installed packages, never downloaded."""
