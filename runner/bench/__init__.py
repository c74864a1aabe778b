"""`runner bench`: timing a model on a target under MLPerf LoadGen's scenario rules."""
