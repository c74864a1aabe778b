"""The project's CPU schedule rules for TVM: one rule per file, tried in order on every PrimFunc
after legalization and fusion (the way DLight applies its GPU rules). The first rule that
matches schedules the function; a function no rule takes keeps TVM's default (unscheduled) loop
nest, and the compile record says which rule declined it and why. `rule.py` is the contract
every rule implements, `analysis.py` the analysis and scheduling steps several rules share.

TVM is imported inside these modules only: `targets.tvm_compiler` imports this package when it
compiles, never at load time.
"""
