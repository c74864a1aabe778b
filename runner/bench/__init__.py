"""`runner bench`: timing a model on a target, its scenarios run by MLPerf LoadGen
(runner/loadgen); see engine.py for what stays here."""
