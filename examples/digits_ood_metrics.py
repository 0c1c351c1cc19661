"""MC dropout on scikit-learn's 8x8 digits: calibration, OOD metrics and accept / reject.

A small MLP learns digits 0-4; digits 5-9 play the unknown inputs. 100 dropout
passes give each input a spread, the metrics score it, and a logistic
rejector on the uncertainty features decides "digit I know or not".
"""

# jaxuq-example: quick
import flax.linen as nn
import jax
import numpy as np
import optax
from sklearn.datasets import load_digits

import jaxuq
from jaxuq import metrics, reject


class MLP(nn.Module):
  @nn.compact
  def __call__(self, x, train: bool = False):
    for _ in range(2):
      x = nn.relu(nn.Dense(128)(x))
      x = jaxuq.Dropout(0.5, deterministic=not train)(x)
    return nn.Dense(5)(x)


def train(key, x, y, steps=400):
  model = MLP()
  init_key, key = jax.random.split(key)
  params = model.init(init_key, x)
  opt = optax.adam(1e-3)

  def loss(params, key):
    logits = model.apply(params, x, train=True, rngs={"dropout": key})
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  @jax.jit
  def step(carry, key):
    params, state = carry
    grads = jax.grad(loss)(params, key)
    updates, state = opt.update(grads, state, params)
    return (optax.apply_updates(params, updates), state), None

  (params, _), _ = jax.lax.scan(step, (params, opt.init(params)), jax.random.split(key, steps))
  return model, params


def main():
  digits = load_digits()
  x = (digits.data / 16.0).astype(np.float32)
  known = digits.target < 5
  rng = np.random.default_rng(0)
  idx_in, idx_out = rng.permutation(np.flatnonzero(known)), rng.permutation(np.flatnonzero(~known))
  train_idx, test_in = idx_in[:500], idx_in[500:]

  key_train, key_mc = jax.random.split(jax.random.key(0))
  model, params = train(key_train, x[train_idx], digits.target[train_idx])
  predict = jaxuq.from_linen(model, params)
  x_test = x[np.concatenate([test_in, idx_out])]
  is_ood = np.concatenate([np.zeros(len(test_in)), np.ones(len(idx_out))]).astype(np.int32)
  logits = jaxuq.mc_sample(predict, key_mc, x_test, num_samples=100)  # (100, batch, 5)
  probs = jax.nn.softmax(logits, axis=-1)

  p_in, y_in = probs[:, : len(test_in)].mean(0), digits.target[test_in]
  correct = p_in.argmax(-1) == y_in
  print(
    f"known digits: accuracy {float(correct.mean()):.3f}, NLL {float(metrics.nll(p_in, y_in)):.3f}, "
    f"Brier {float(metrics.brier_score(p_in, y_in)):.3f}, "
    f"ECE {float(metrics.expected_calibration_error(p_in, y_in)):.3f}, "
    f"AURC {float(metrics.aurc(metrics.predictive_entropy(probs[:, : len(test_in)]), correct)):.4f}"
  )
  scores = {
    "predictive entropy": metrics.predictive_entropy(probs),
    "mutual information": metrics.mutual_information(probs),
    "class std": metrics.class_std(probs),
    "1 - max probability": 1 - metrics.max_probability(probs),
  }
  print("unknown digits 5-9 vs known 0-4:")
  for name, s in scores.items():
    print(
      f"  {name:20s} AUROC {float(metrics.auroc(s, is_ood)):.3f}  "
      f"AP {float(metrics.average_precision(s, is_ood)):.3f}  "
      f"FPR@95 {float(metrics.fpr_at_tpr(s, is_ood, 0.95)):.3f}"
    )

  # Accept / reject: fit on one third, threshold on another, evaluate on the last.
  features = reject.uncertainty_features(probs)
  parts = np.array_split(rng.permutation(len(is_ood)), 3)
  rejector = reject.fit_rejector(
    features[parts[0]], is_ood[parts[0]], features[parts[1]], is_ood[parts[1]], target_tpr=0.8
  )
  decision = reject.decide(rejector, features[parts[2]])
  rejected, truth = np.asarray(decision.reject), is_ood[parts[2]] == 1
  kept_known = parts[2][~rejected & ~truth]
  pred = np.asarray(probs.mean(0).argmax(-1))
  labels = np.concatenate([y_in, digits.target[idx_out]])
  print(
    f"reject (target TPR 0.8 on held-out): decision accuracy {float((rejected == truth).mean()):.3f}, "
    f"TPR {float(rejected[truth].mean()):.3f}, FPR {float(rejected[~truth].mean()):.3f}, "
    f"accepted known digits classified right {float((pred[kept_known] == labels[kept_known]).mean()):.3f}"
  )


if __name__ == "__main__":
  main()
