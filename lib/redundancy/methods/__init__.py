"""The paper's methods: CKA (:mod:`.cka`, over :mod:`.moments`), correlation clustering
(:mod:`.clustering`), linear probes (:mod:`.probe`, trained by :mod:`.probe_engine` with the
compiled passes of :mod:`.probe_kernels`), neuron ranking (:mod:`.ranking`), the selections of
layers and neurons (:mod:`.selection`), intervals (:mod:`.uncertainty`) and the efficiency
timings (:mod:`.efficiency`)."""
