"""Representations: encoders (:mod:`.models`), word- and sentence-level activations
(:mod:`.activations`) in a memory-mapped store (:mod:`.store`), fine-tuning for sentence tasks
(:mod:`.finetune`), and a run's configuration and extraction of everything it names (:mod:`.runs`)."""
