"""Linear probes (Goldowsky-Dill et al. 2025): logistic regression on per-layer activations,
trained on the blue team's *reference* organisms (label 1) and controls (label 0), never on
the scored population. Score: the mean probe probability over a member's deployment prompts
(``questions`` of them, taken from every difficulty level alike).
The layer is chosen by cross-validation (folds by member) on the reference population, and the
reference members' own scores are out-of-fold. A probe only applies to
models of the architecture it was trained on; others get NaN (and are left out of its AUROC).
"""

from __future__ import annotations

from functools import partial

import jax
import numpy as np
from flax import nnx

from sandbag.decode import prompts_of
from sandbag.detect.base import Detector, register_detector
from sandbag.population import each_member, over_members


@partial(jax.jit, static_argnames=("graphdef",))
def _last_prompt_acts(graphdef, params, prompts_BxP):
    """Residual stream after every block at the last prompt position: [M, layers, B, D]."""

    def one(p):
        _, acts = nnx.merge(graphdef, p).activations(prompts_BxP)
        return acts[:, :, -1]

    return over_members(one, params)


def activations(pop, questions, context: int) -> np.ndarray:
    prompts = prompts_of(questions, context)
    return each_member(lambda p: _last_prompt_acts(pop.graphdef, p, prompts), pop.params)


@register_detector("linear_probe")
class LinearProbe(Detector):
    access = "white-box activations (reference organisms)"

    def fit(self, view):
        from sklearn.model_selection import GroupKFold, cross_val_score  # see _model

        n = int(self.cfg["questions"])
        q = view.questions.spread(n)  # every level's questions, not the easiest level's
        feats, labels, self.shape, owner = [], [], None, []
        for g, (pop, member_labels, context) in enumerate(view.reference):
            acts = activations(pop, q, context)  # [M, layers, n, D]
            if self.shape is None:
                self.shape = acts.shape[1:2] + acts.shape[3:]
            if acts.shape[1:2] + acts.shape[3:] != self.shape:
                continue  # another architecture: this probe cannot read it
            owner += [(g, i) for i in range(acts.shape[0])]
            feats.append(acts)
            labels.append(np.repeat(np.asarray(member_labels), acts.shape[2]))
            self.cost["forward_passes"] += acts.shape[0] * acts.shape[2]
        acts = np.concatenate(feats)  # [R, layers, n, D]
        y = np.concatenate(labels)
        groups = np.repeat(np.arange(len(acts)), acts.shape[2])
        best = (-1.0, 0)
        for layer in range(acts.shape[1]):
            X = acts[:, layer].reshape(-1, acts.shape[-1])
            folds = min(5, len(acts))
            cv = cross_val_score(self._model(), X, y, groups=groups, cv=GroupKFold(folds))
            best = max(best, (float(cv.mean()), layer))
        self.layer = best[1]
        # what it reads: this block's output at the last prompt position
        self.info.update(layer=self.layer, layer_cv_acc=best[0])
        X = acts[:, self.layer].reshape(-1, acts.shape[-1])
        self.probe = self._model().fit(X, y)
        self.questions = q
        # Out-of-fold scores of the reference members, for anything fit on them afterwards
        # (the combined detector): in-sample probe scores would look perfect.
        self.reference_scores = [np.full(len(ref[1]), np.nan) for ref in view.reference]
        for train_idx, test_idx in GroupKFold(min(5, len(acts))).split(X, y, groups):
            probe = self._model().fit(X[train_idx], y[train_idx])
            for r in np.unique(groups[test_idx]):
                g, i = owner[r]
                self.reference_scores[g][i] = probe.predict_proba(acts[r, self.layer])[:, 1].mean()

    def _model(self):
        from sklearn.linear_model import LogisticRegression  # sklearn where it is used: detect/game.py
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        return make_pipeline(StandardScaler(), LogisticRegression(C=float(self.cfg["C"]), max_iter=2000))

    def score(self, pop, view):
        acts = activations(pop, self.questions, view.context)
        if acts.shape[1:2] + acts.shape[3:] != self.shape:
            return np.full(acts.shape[0], np.nan)
        self.cost["forward_passes"] += acts.shape[0] * acts.shape[2]
        probs = [self.probe.predict_proba(a[self.layer])[:, 1] for a in acts]
        return np.asarray([p.mean() for p in probs])
