// Launcher of the CUDA judge_scores kernels (docs/architecture.md, "judge_scores"). Plain
// pointers and the CUDA runtime only, so this header and judge_scores.cu compile with nvcc
// alone; the torch glue that fills the Params and allocates the workspaces lives in
// csrc/cuda/judge_scores.cpp.
#pragma once

#include <cuda_runtime.h>

#include "judge_scores_tile.h"

namespace ramo {
namespace cuda {

enum class HiddenType { kFloat16, kBFloat16, kFloat32, kFloat64 };

using JudgeScoresSplits = judge_tile::Splits;
template <typename acc_t>
using JudgeScoresParams = judge_tile::Params<acc_t>;

// How "vocab" mode cuts the vocabulary for a device with num_sms SMs; the caller sizes the
// [splits, b] workspaces (part_max, part_sum) from it and copies it into the Params.
inline JudgeScoresSplits judge_scores_splits(int64_t b, int64_t v, int num_sms) {
  return judge_tile::vocab_splits(b, v, num_sms);
}

// Runs the kernels on stream: the vocabulary pass ("vocab" mode), the listed logits, the
// outputs. acc_t is float for fp16 / bf16 / fp32 hidden and weight, double for fp64.
cudaError_t launch_judge_scores(HiddenType type, const JudgeScoresParams<float>& p,
                                cudaStream_t stream);
cudaError_t launch_judge_scores(HiddenType type, const JudgeScoresParams<double>& p,
                                cudaStream_t stream);

}  // namespace cuda
}  // namespace ramo
