"""Digits in, letters out, with the public API: train a CNN on digits, reject letters by MC dropout.

By default it runs in seconds on scikit-learn's digits and letters from
matplotlib's fonts (no fetched data); with --full (after `make data`) on MNIST
and letters: EMNIST if prepared, else SYNTHETIC font-rendered letters.
`jaxuq ood` is the full experiment.
"""

# jaxuq-example: quick
import sys

import jax
import numpy as np
import optax

import jaxuq
from jaxuq import data, metrics, reject
from jaxuq.models import BasicCNN
from jaxuq.train import train

quick = "--full" not in sys.argv[1:]
src = {"digits_source": "sklearn", "letters_source": "fonts", "system_fonts": False, "max_fonts": 6}
sets = data.load_digits_and_letters(**(src if quick else {}))
print("letters:", sets.letters_test.source)

# 1. Train on digits, holding out 300 for the accept/reject stage.
x, y = sets.digits_train.images, sets.digits_train.labels
model = BasicCNN()
state, _ = train(jax.random.key(0), model, optax.adam(1e-3), x[:-300], y[:-300],
                 loss="cross_entropy", epochs=3 if quick else 2, batch_size=128, progress=False)  # fmt: skip

# 2. 50 MC dropout passes on held-out digits/letters (to fit) and test digits/letters.
predict = jaxuq.from_linen(model, state.variables, train=False)


def probs(x, i):
  return jax.nn.softmax(jaxuq.mc_sample(predict, jax.random.key(i), x[:300], num_samples=50), -1)


fit_in, fit_out = probs(x[-300:], 1), probs(sets.letters_train.images, 2)
test_in, test_out = probs(sets.digits_test.images, 3), probs(sets.letters_test.images, 4)
y_test = sets.digits_test.labels[:300]

# 3. How well does each uncertainty separate digits from letters?
is_letter = np.r_[np.zeros(test_in.shape[1]), np.ones(test_out.shape[1])].astype(np.int32)
both = np.concatenate([test_in, test_out], axis=1)
print(f"digit accuracy (MC mean): {float((test_in.mean(0).argmax(-1) == y_test).mean()):.3f}")
for name, s in [("class std", metrics.class_std(both)),
                ("mutual information", metrics.mutual_information(both))]:  # fmt: skip
  print(f"AUROC digits vs letters by {name}: {float(metrics.auroc(s, is_letter)):.3f}")

# 4. Accept/reject: logistic on uncertainty features, fit and thresholded on held-out halves.
f = np.concatenate([reject.uncertainty_features(fit_in), reject.uncertainty_features(fit_out)])
t = np.r_[np.zeros(fit_in.shape[1]), np.ones(fit_out.shape[1])].astype(np.int32)
half = np.random.default_rng(0).permutation(len(t))
a, b = half[: len(t) // 2], half[len(t) // 2 :]
rejector = reject.fit_rejector(f[a], t[a], f[b], t[b], target_tpr=0.9)
rejected = np.asarray(reject.decide(rejector, reject.uncertainty_features(both)).reject)
kept = ~rejected[: len(y_test)]
right = test_in.mean(0).argmax(-1)[kept] == y_test[kept]
print(f"decision accuracy {float((rejected == is_letter).mean()):.3f}; accepted digits "
      f"{float(kept.mean()):.3f}, classified right {float(right.mean()):.3f}")  # fmt: skip
