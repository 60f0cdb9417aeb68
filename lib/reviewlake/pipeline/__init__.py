"""``reviewlake pipeline``: the stages in order, with step caching and a closing summary."""
