// Host-side pieces of judge_scores shared by the CPU and CUDA implementations.
#pragma once

#include <torch/types.h>

#include <functional>
#include <optional>
#include <string>
#include <tuple>

namespace ramo {

// (p_yes, p_no, p_other, score, relevance), each [B] in the accumulation dtype.
using JudgeScoresResult = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>;

// Inputs after checking: contiguous hidden and weight (their own dtype), bias in the
// accumulation dtype, ids as contiguous int64 on the tensors' device.
struct JudgeScoresInputs {
  at::Tensor hidden, weight, ids;
  std::optional<at::Tensor> bias;
  int64_t n_yes = 0, n_no = 0;
  bool choices = false;  // normalize == "choices"
  at::ScalarType acc_type;
};

// Every check of ramo.ops.judge_scores that concerns the op's own arguments (shapes, dtypes,
// devices, ids, normalize), plus the value checks of ramo/reference/judge_scores.py
// (finite hidden; bias without NaN or +inf, not masking everything). ValueError otherwise,
// so that calling torch.ops.ramo.judge_scores directly cannot read out of bounds.
JudgeScoresInputs prepare_judge_scores(const at::Tensor& hidden, const at::Tensor& weight,
                                       const std::optional<at::Tensor>& bias,
                                       const at::Tensor& ids, int64_t n_yes, int64_t n_no,
                                       const std::string& normalize);

// Outputs, uninitialised.
JudgeScoresResult empty_judge_scores_outputs(const JudgeScoresInputs& in);

// [B, L] logits of the listed ids in the accumulation dtype, contiguous: one matmul over only
// those rows of weight (all that "choices" mode reads). hidden_acc is hidden in that dtype.
at::Tensor judge_listed_logits(const JudgeScoresInputs& in, const at::Tensor& hidden_acc);

// "vocab" mode's pass over the vocabulary without the [B, V] logits: calls
// fold(logits, v0) for the chunks [v0, v0 + c) of at most `chunk` vocabulary rows in order,
// logits being the chunk's [B, c] logits without the bias, in the accumulation dtype. Each
// comes from one matmul (at::mm_out, so BLAS or cuBLAS) into a buffer that every chunk
// reuses. A matmul in fp16 / bf16 would round the logits to that dtype: on CUDA, cuBLAS
// writes fp32 from the narrow inputs instead; on the CPU each chunk of weight is converted
// into a [chunk, D] fp32 buffer first. fold must be done with the
// buffer when it returns, or (on a GPU) have queued its reads on the current stream.
void for_each_vocab_chunk(const JudgeScoresInputs& in, const at::Tensor& hidden_acc,
                          int64_t chunk,
                          const std::function<void(const at::Tensor&, int64_t)>& fold);

}  // namespace ramo
