"""A logistic model over the other detectors' scores, fit on the blue team's reference
population (regularisation chosen by cross-validation there) and applied to the scored one.
Its access is the union of its inputs'; its cost is theirs (it adds none)."""

from __future__ import annotations

import warnings

import numpy as np

from sandbag.detect.base import Detector, register_detector


@register_detector("combined")
class Combined(Detector):
    access = "all of the above"
    combines = True

    def combine(self, ref_scores: np.ndarray, ref_labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """ref_scores [R, D] with labels [R]; scores [M, D] -> suspicion [M]."""
        folds = int(min(5, np.bincount(ref_labels.astype(int)).min()))
        model = self._model(max(folds, 2))
        with warnings.catch_warnings():  # sklearn's notices of defaults that change nothing here
            warnings.simplefilter("ignore", FutureWarning)
            model.fit(ref_scores, ref_labels)
        return model.predict_proba(scores)[:, 1]

    @staticmethod
    def _model(folds: int):
        from sklearn.impute import SimpleImputer  # sklearn where it is used: sandbag/detect/game.py
        from sklearn.linear_model import LogisticRegressionCV
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        # The regularisation is the one that classifies held-out reference members best. The
        # scoring is named: scikit-learn 1.11 makes the log loss the default, which would pick
        # another regularisation and move every combined score without a word.
        return make_pipeline(
            SimpleImputer(strategy="mean", keep_empty_features=True),
            StandardScaler(),
            LogisticRegressionCV(cv=folds, scoring="accuracy", max_iter=5000),
        )
