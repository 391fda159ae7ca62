// The arithmetic of judge_scores (docs/architecture.md, "judge_scores") that the C++ CPU
// kernel, the CUDA kernel and the C++ unit tests share: the online log-sum-exp state and the
// per-row scores computed from the listed logits. Plain C++: no torch headers, so nvcc compiles
// it alone. ramo/reference/judge_scores.py is the specification; kernels/triton/judge_scores.py
// follows the same steps.
#pragma once

#include <cmath>
#include <cstdint>

#include "arith.h"  // RAMO_HD

namespace ramo {
namespace judge {

template <typename acc_t>
RAMO_HD acc_t neg_inf() {
  return -static_cast<acc_t>(INFINITY);
}

template <typename acc_t>
RAMO_HD acc_t quiet_nan() {
  return static_cast<acc_t>(NAN);
}

RAMO_HD float exp_acc(float x) { return expf(x); }
RAMO_HD double exp_acc(double x) { return exp(x); }

// Running softmax normaliser of a row: sum of exp(logit - max) over the logits seen so far.
// The empty state, and a state that has seen only -inf logits (masked tokens), is
// (max -inf, sum 0). A NaN logit (only a non-finite weight makes one) makes the sum NaN, as it
// makes torch.softmax's row NaN; the max skips NaN, so a chunk of only NaN and -inf logits
// is (max -inf, sum NaN).
template <typename acc_t>
struct LseState {
  acc_t max;
  acc_t sum;
};

template <typename acc_t>
RAMO_HD LseState<acc_t> lse_empty() {
  return {neg_inf<acc_t>(), acc_t(0)};
}

// Combines two states. The larger max survives and the other sum is rescaled by
// exp(its max - new max); a -inf max with sum 0 means "nothing yet" and must not reach
// exp(-inf + inf). A NaN sum survives every merge: its NaN times any factor stays NaN, and
// it is never the state that a merge drops.
template <typename acc_t>
RAMO_HD LseState<acc_t> lse_merge(LseState<acc_t> a, LseState<acc_t> b) {
  if (a.max < b.max) {
    const LseState<acc_t> t = a;
    a = b;
    b = t;
  }
  if (b.max == neg_inf<acc_t>() && b.sum == acc_t(0)) return a;  // also covers both empty
  return {a.max, a.sum + b.sum * exp_acc(b.max - a.max)};
}

template <typename acc_t>
struct RowScores {
  acc_t p_yes, p_no, p_other, score, relevance;
};

// The five outputs of one row from its listed logits: listed[0, n_yes) are the yes ids,
// then n_no no ids, then the other ids up to n_listed. vocab is the row's state over the
// whole vocabulary (ignored when choices is true: then the softmax is over the listed ids
// only). A probability is exp(logit - vocab.max) / vocab.sum, as torch.softmax computes it:
// folding the two into one log-sum-exp would round max + log(sum) to the ulp of the max,
// which is 2e-3 for fp32 logits near 16384.
//
// Relevance is the ratio of the set sums of exp(listed - listed max): the normaliser cancels
// in (p_yes + p_no) / (p_yes + p_no + p_other), and this form does not underflow where the
// vocabulary probabilities do. It is 0 when every listed logit is -inf.
template <typename acc_t>
RAMO_HD RowScores<acc_t> row_scores(const acc_t* listed, int64_t n_yes, int64_t n_no,
                                    int64_t n_listed, LseState<acc_t> vocab, bool choices) {
  acc_t top = neg_inf<acc_t>();
  for (int64_t j = 0; j < n_listed; ++j) top = listed[j] > top ? listed[j] : top;
  const bool all_masked = top == neg_inf<acc_t>();
  const acc_t shift = all_masked ? acc_t(0) : top;
  // Set sums of exp(l - shift) for the relevance (and, in choices mode, the probabilities)
  // and of exp(l - vocab.max) for the vocabulary probabilities. Scalars, not arrays indexed
  // by the set, so that the CUDA build keeps them in registers.
  acc_t rel_yes = 0, rel_no = 0, rel_other = 0, vocab_yes = 0, vocab_no = 0, vocab_other = 0;
  for (int64_t j = 0; j < n_listed; ++j) {
    const acc_t e = exp_acc(listed[j] - shift);
    const acc_t p = choices ? acc_t(0) : exp_acc(listed[j] - vocab.max);
    if (j < n_yes) {
      rel_yes += e;
      vocab_yes += p;
    } else if (j < n_yes + n_no) {
      rel_no += e;
      vocab_no += p;
    } else {
      rel_other += e;
      vocab_other += p;
    }
  }
  const acc_t answer = rel_yes + rel_no;
  const acc_t total = answer + rel_other;
  RowScores<acc_t> out;
  out.relevance = total > acc_t(0) ? answer / total : acc_t(0);
  if (choices) {
    // total >= 1 here (the max term is exp(0)); all_masked is refused by the host checks.
    out.p_yes = rel_yes / total;
    out.p_no = rel_no / total;
    out.p_other = rel_other / total;
  } else if (vocab.max == neg_inf<acc_t>()) {
    // Every logit -inf (the host refuses a bias that masks every token, but finite inputs
    // can overflow to -inf), or only NaN besides them: torch.softmax gives the row NaN.
    out.p_yes = out.p_no = out.p_other = quiet_nan<acc_t>();
  } else {
    out.p_yes = vocab_yes / vocab.sum;
    out.p_no = vocab_no / vocab.sum;
    out.p_other = vocab_other / vocab.sum;
  }
  out.score = out.p_yes - out.p_no;
  return out;
}

}  // namespace judge
}  // namespace ramo
