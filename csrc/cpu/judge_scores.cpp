// CPU implementation of ramo::judge_scores: torch glue around judge_scores_kernel.h.
//
// "vocab" mode never holds the [B, V] logits: the vocabulary is cut into chunks; each chunk's
// [B, chunk] logits come from one BLAS matmul (for_each_vocab_chunk in csrc/judge_scores.cpp:
// a buffer reused by every chunk, so the chunks run about as fast as one big matmul) and are
// folded into a running (max, sum of exp) per row, rows split over threads. The listed ids'
// logits come from a separate small matmul over only those rows of weight
// (judge_listed_logits), which is all "choices" mode reads.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "../judge_scores.h"
#include "judge_scores_kernel.h"

namespace ramo {

namespace {

// Vocabulary rows per chunk: the [B, chunk] block is at most ~1/32 of the [B, V] logits it
// replaces and at most 4096 columns (a row's slice then sits in L1/L2 while it is reduced),
// but not below 256 columns, where the matmuls would get too thin to run at full speed.
int64_t chunk_columns(int64_t vocab) {
  const int64_t thirty_second = (vocab + 31) / 32;
  const int64_t rounded = (thirty_second + 15) / 16 * 16;
  return std::min(vocab, std::min<int64_t>(4096, std::max<int64_t>(256, rounded)));
}

// For fp16 / bf16 weights each chunk is converted to the accumulation dtype first (a matmul
// in the narrow dtype would round the logits to it); the converted copy is kept no larger
// than the logits block or 2^20 values (4 MiB), whichever is larger: bounded by the logits
// block alone, a small batch got chunks of 64 rows, whose per-chunk costs made the op
// 1.5-1.8x slower (B = 8, D = 576, V = 49152, bf16: 17.9-22.2 ms a call, 11.9-12.2 now).
int64_t narrow_chunk_columns(int64_t vocab, int64_t batch, int64_t dim) {
  const int64_t chunk = chunk_columns(vocab);
  const int64_t fits =
      dim > 0 ? std::max<int64_t>(batch * chunk, int64_t{1} << 20) / dim : chunk;
  return std::min(chunk, std::max<int64_t>(64, fits));
}

// Running log-sum-exp over the whole vocabulary of every row.
template <typename acc_t>
void vocab_states(const JudgeScoresInputs& in, const at::Tensor& hidden_acc,
                  std::vector<judge::LseState<acc_t>>& state) {
  const int64_t batch = hidden_acc.size(0), dim = hidden_acc.size(1);
  const int64_t vocab = in.weight.size(0);
  const int64_t chunk = in.weight.scalar_type() != in.acc_type
                            ? narrow_chunk_columns(vocab, batch, dim)
                            : chunk_columns(vocab);
  for_each_vocab_chunk(in, hidden_acc, chunk, [&](const at::Tensor& logits, int64_t v0) {
    const int64_t c = logits.size(1);
    // About 16K exps per task: enough work to pay for handing it to another thread.
    const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 14) / c);
    acc_t* x = logits.data_ptr<acc_t>();  // the kernel adds the bias in place
    const acc_t* bias = in.bias.has_value() ? in.bias->data_ptr<acc_t>() + v0 : nullptr;
    at::parallel_for(0, batch, grain, [&](int64_t begin, int64_t end) {
      cpu::lse_update_rows<acc_t>(x, bias, c, begin, end, state.data());
    });
  });
}

template <typename acc_t>
void run(const JudgeScoresInputs& in, JudgeScoresResult& out) {
  const int64_t batch = in.hidden.size(0);
  const at::Tensor hidden_acc = in.hidden.to(in.acc_type).contiguous();
  const at::Tensor listed = judge_listed_logits(in, hidden_acc);
  std::vector<judge::LseState<acc_t>> state(batch, judge::lse_empty<acc_t>());
  if (!in.choices) vocab_states<acc_t>(in, hidden_acc, state);
  cpu::finish_rows<acc_t>(listed.data_ptr<acc_t>(), in.n_yes, in.n_no, in.ids.size(0),
                          state.data(), in.choices, 0, batch,
                          std::get<0>(out).data_ptr<acc_t>(), std::get<1>(out).data_ptr<acc_t>(),
                          std::get<2>(out).data_ptr<acc_t>(), std::get<3>(out).data_ptr<acc_t>(),
                          std::get<4>(out).data_ptr<acc_t>());
}

JudgeScoresResult judge_scores_cpu(const at::Tensor& hidden, const at::Tensor& weight,
                                   const std::optional<at::Tensor>& bias, const at::Tensor& ids,
                                   int64_t n_yes, int64_t n_no, c10::string_view normalize) {
  const JudgeScoresInputs in =
      prepare_judge_scores(hidden, weight, bias, ids, n_yes, n_no, std::string(normalize));
  JudgeScoresResult out = empty_judge_scores_outputs(in);
  if (in.hidden.size(0) == 0) return out;
  if (in.acc_type == at::kDouble) {
    run<double>(in, out);
  } else {
    run<float>(in, out);
  }
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(ramo, CPU, m) { m.impl("judge_scores", &judge_scores_cpu); }

}  // namespace ramo
