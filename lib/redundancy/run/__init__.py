"""Running and publishing: the notebook runner (:mod:`.notebooks`), publishing a run with its
provenance (:mod:`.publish`) and the troubleshooting cases (:mod:`.troubleshooting`)."""
