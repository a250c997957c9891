"""scikit-learn's own estimator checks on the library's estimators.

``parametrize_with_checks`` runs every API check scikit-learn applies to its own estimators
(cloning, ``get_params``/``set_params``, fitted attributes, ``n_features_in_``, input
validation and its messages, NaN/infinity, sparse and complex input refused, results
invariant to the order and batching of rows, pickling, ...).

Settings: the probes run with 100 epochs of Adam at 0.05 on batches of 32 instead of the
paper's 10 epochs at 1e-3 on batches of 128. The checks' toy problems have 30-150 rows, so
the paper's settings take 2-12 optimiser steps in all and stay near the initialisation;
``check_classifiers_train`` / ``check_regressors_train`` then fail on accuracy, not on the API.
Every other check passes with the defaults too.

Skipped by scikit-learn itself, not by us: ``check_array_api_input`` (it runs only with
``SCIPY_ARRAY_API=1``; the estimators take NumPy arrays and memory-mapped files, not other
array libraries). No check is listed as an expected failure.
"""

from __future__ import annotations

import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from redundancy.methods.clustering import CorrelationClustering
from redundancy.methods.probe import LinearProbe, LinearProbeRegressor

TOY = {"epochs": 100, "learning_rate": 0.05, "batch_size": 32}


@pytest.mark.filterwarnings("ignore:invalid value encountered in cast:RuntimeWarning")  # inside sklearn's own
@parametrize_with_checks([LinearProbe(**TOY), LinearProbeRegressor(**TOY), CorrelationClustering()])
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)
