"""The rewrite engine: rules as data (a pattern, a build, the op it needs the target to run),
and one engine that walks every graph, checks each site and rewrites to a fixed point."""
