// Launchers of the CUDA judge_scores kernels (docs/architecture.md, "judge_scores"). Plain
// pointers and the CUDA runtime only, so this header and judge_scores.cu compile with nvcc
// alone; the torch glue (the listed ids' logits, the vocabulary chunks' matmuls and the
// workspaces) lives in csrc/cuda/judge_scores.cpp.
#pragma once

#include <cuda_runtime.h>

#include "judge_scores_steps.h"

namespace ramo {
namespace cuda {

template <typename acc_t>
using JudgeScoresFoldParams = judge_scores_steps::FoldParams<acc_t>;
template <typename acc_t>
using JudgeScoresFinishParams = judge_scores_steps::FinishParams<acc_t>;

// Folds one chunk's logits into the partial states of its segments. acc_t is float for
// fp16 / bf16 / fp32 inputs (the logits are in the accumulation dtype), double for fp64.
cudaError_t launch_judge_scores_fold(const JudgeScoresFoldParams<float>& p, cudaStream_t stream);
cudaError_t launch_judge_scores_fold(const JudgeScoresFoldParams<double>& p,
                                     cudaStream_t stream);

// Merges every row's partial states and writes the five outputs.
cudaError_t launch_judge_scores_finish(const JudgeScoresFinishParams<float>& p,
                                       cudaStream_t stream);
cudaError_t launch_judge_scores_finish(const JudgeScoresFinishParams<double>& p,
                                       cudaStream_t stream);

}  // namespace cuda
}  // namespace ramo
