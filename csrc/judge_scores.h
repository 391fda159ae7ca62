// Host-side pieces of judge_scores shared by the CPU and CUDA implementations.
#pragma once

#include <torch/types.h>

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

}  // namespace ramo
