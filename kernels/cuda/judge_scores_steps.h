// The per-lane steps of the CUDA judge_scores kernels (kernels/cuda/judge_scores.cu). The
// kernels give a warp one (row, segment) or one row; each lane runs these functions over its
// share (elements lane, lane + 32, ...) and the warp combines the 32 results with a butterfly
// of shuffles. Plain C++, no CUDA headers; the C++ unit tests run the kernels themselves on
// the host (docs/architecture.md, "The CUDA kernels on the host").
#pragma once

#include <cstdint>

#include "../common/judge_scores.h"

namespace ramo {
namespace cuda {
namespace judge_scores_steps {

constexpr int kLanes = 32;
// Vocabulary columns per partial state: one warp folds one row's segment. Chunks are a whole
// number of segments (or the whole vocabulary), so segment s of the vocabulary covers
// columns [s * kSegmentCols, (s + 1) * kSegmentCols) whichever chunk it falls in.
constexpr int64_t kSegmentCols = 1024;

// One chunk's [b, c] logits (bias not yet added), folded into partial states per segment.
template <typename acc_t>
struct FoldParams {
  const acc_t* logits;    // [b, c] contiguous, row stride c
  const acc_t* bias;      // nullptr or the chunk's [c] slice of the bias
  int64_t b, c;
  int64_t first_segment;  // vocabulary segment of the chunk's column 0
  acc_t* part_max;        // [segments, b]: each segment's max per row
  acc_t* part_sum;        // [segments, b]: its sum of exp(logit - max)
};

// The outputs of every row from the listed ids' logits and (in "vocab" mode) the segments'
// partial states.
template <typename acc_t>
struct FinishParams {
  const acc_t* listed;  // [b, n_listed]: yes ids, then no ids, then other ids
  int64_t b, n_listed, n_yes, n_no;
  bool choices;
  int64_t segments;  // 0 in "choices" mode
  const acc_t* part_max;
  const acc_t* part_sum;
  acc_t* p_yes;  // outputs, [b] each
  acc_t* p_no;
  acc_t* p_other;
  acc_t* score;
  acc_t* relevance;
};

// Segments of a chunk of c columns (of the whole vocabulary for c = V).
RAMO_HD int64_t segments_of(int64_t c) { return (c + kSegmentCols - 1) / kSegmentCols; }

// Vocabulary rows per chunk (v >= 1): about V / 16, so that each matmul is big enough for
// cuBLAS and the buffer 1/16 of the logits, and at most 2^24 logits in the buffer (64 MiB in
// fp32) at large B, though never less than one segment (so B x 1024 past B = 16384). Always
// a whole number of segments, or the whole vocabulary.
inline int64_t chunk_columns(int64_t b, int64_t v) {
  int64_t chunk = segments_of((v + 15) / 16) * kSegmentCols;
  const int64_t fits = (int64_t{1} << 24) / (b > 0 ? b : 1) / kSegmentCols * kSegmentCols;
  const int64_t cap = fits > kSegmentCols ? fits : kSegmentCols;
  if (cap < chunk) chunk = cap;
  return chunk < v ? chunk : v;
}

template <typename acc_t>
RAMO_HD acc_t logit(const FoldParams<acc_t>& f, int64_t row, int64_t col) {
  const acc_t x = f.logits[row * f.c + col];
  return f.bias != nullptr ? x + f.bias[col] : x;
}

// Step 1: the lane's max over its columns of the row's segment seg (of the chunk).
template <typename acc_t>
RAMO_HD acc_t lane_max(const FoldParams<acc_t>& f, int64_t row, int64_t seg, int lane) {
  const int64_t end = (seg + 1) * kSegmentCols < f.c ? (seg + 1) * kSegmentCols : f.c;
  acc_t m = judge::neg_inf<acc_t>();
  for (int64_t col = seg * kSegmentCols + lane; col < end; col += kLanes) {
    const acc_t x = logit(f, row, col);
    m = x > m ? x : m;
  }
  return m;
}

// Step 2, given the segment's max m (the warp's max of step 1): the lane's sum of
// exp(logit - m). A segment of masked (-inf) tokens only has m = -inf and sum 0; the max
// skips NaN, so with m = -inf a NaN logit makes the sum NaN instead (as it makes
// torch.softmax's row NaN).
template <typename acc_t>
RAMO_HD acc_t lane_sum(const FoldParams<acc_t>& f, int64_t row, int64_t seg, int lane,
                       acc_t m) {
  const int64_t end = (seg + 1) * kSegmentCols < f.c ? (seg + 1) * kSegmentCols : f.c;
  acc_t s = 0;
  if (m == judge::neg_inf<acc_t>()) {
    for (int64_t col = seg * kSegmentCols + lane; col < end; col += kLanes) {
      const acc_t x = logit(f, row, col);
      if (x != x) s = x;
    }
    return s;
  }
  for (int64_t col = seg * kSegmentCols + lane; col < end; col += kLanes) {
    s += judge::exp_acc(logit(f, row, col) - m);
  }
  return s;
}

template <typename acc_t>
RAMO_HD void write_partial(const FoldParams<acc_t>& f, int64_t row, int64_t seg, acc_t m,
                           acc_t s) {
  const int64_t at = (f.first_segment + seg) * f.b + row;
  f.part_max[at] = m;
  f.part_sum[at] = s;
}

// Finish, step 1: the lane's merge of the row's segments lane, lane + 32, ...
template <typename acc_t>
RAMO_HD judge::LseState<acc_t> lane_vocab_state(const FinishParams<acc_t>& p, int64_t row,
                                                int lane) {
  judge::LseState<acc_t> st = judge::lse_empty<acc_t>();
  for (int64_t s = lane; s < p.segments; s += kLanes) {
    st = judge::lse_merge(st, judge::LseState<acc_t>{p.part_max[s * p.b + row],
                                                     p.part_sum[s * p.b + row]});
  }
  return st;
}

// Finish, step 2 (one lane), given the row's whole-vocabulary state (the warp's merge of
// step 1; ignored in "choices" mode).
template <typename acc_t>
RAMO_HD void finish_row(const FinishParams<acc_t>& p, int64_t row,
                        judge::LseState<acc_t> vocab) {
  const judge::RowScores<acc_t> r = judge::row_scores(p.listed + row * p.n_listed, p.n_yes,
                                                      p.n_no, p.n_listed, vocab, p.choices);
  p.p_yes[row] = r.p_yes;
  p.p_no[row] = r.p_no;
  p.p_other[row] = r.p_other;
  p.score[row] = r.score;
  p.relevance[row] = r.relevance;
}

}  // namespace judge_scores_steps
}  // namespace cuda
}  // namespace ramo
