// CUDA implementation of ramo::judge_scores: torch glue around kernels/cuda/judge_scores.cu.
// Built only when torch has CUDA (setup.py defines RAMO_WITH_CUDA then).
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "../../kernels/cuda/judge_scores.cuh"
#include "../judge_scores.h"

namespace ramo {

namespace {

cuda::HiddenType hidden_type(at::ScalarType t) {
  switch (t) {
    case at::kHalf: return cuda::HiddenType::kFloat16;
    case at::kBFloat16: return cuda::HiddenType::kBFloat16;
    case at::kFloat: return cuda::HiddenType::kFloat32;
    default: return cuda::HiddenType::kFloat64;
  }
}

// Workspaces: the [splits, b] partial states of the vocabulary slices and the [b, n_listed]
// listed logits; a few KB, against the [b, v] logits that are never made.
struct Workspace {
  at::Tensor part_max, part_sum, listed;
  cuda::JudgeScoresSplits splits{0, 0};
};

Workspace workspace(const JudgeScoresInputs& in) {
  const int64_t b = in.hidden.size(0), v = in.weight.size(0);
  const auto opts = in.hidden.options().dtype(in.acc_type);
  Workspace ws;
  if (!in.choices) {
    int sms = 0;
    C10_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount,
                                          c10::cuda::current_device()));
    ws.splits = cuda::judge_scores_splits(b, v, sms);
    ws.part_max = at::empty({ws.splits.splits, b}, opts);
    ws.part_sum = at::empty({ws.splits.splits, b}, opts);
  }
  ws.listed = at::empty({b, in.ids.size(0)}, opts);
  return ws;
}

template <typename acc_t>
cuda::JudgeScoresParams<acc_t> params(const JudgeScoresInputs& in, const Workspace& ws,
                                      JudgeScoresResult& out) {
  cuda::JudgeScoresParams<acc_t> p{};
  p.hidden = in.hidden.data_ptr();
  p.weight = in.weight.data_ptr();
  p.bias = in.bias ? in.bias->data_ptr<acc_t>() : nullptr;
  p.ids = in.ids.data_ptr<int64_t>();
  p.b = in.hidden.size(0);
  p.v = in.weight.size(0);
  p.d = in.hidden.size(1);
  p.n_listed = in.ids.size(0);
  p.n_yes = in.n_yes;
  p.n_no = in.n_no;
  p.choices = in.choices;
  p.splits = ws.splits.splits;
  p.tiles_per_split = ws.splits.tiles_per_split;
  p.part_max = in.choices ? nullptr : ws.part_max.data_ptr<acc_t>();
  p.part_sum = in.choices ? nullptr : ws.part_sum.data_ptr<acc_t>();
  p.listed = ws.listed.data_ptr<acc_t>();
  p.p_yes = std::get<0>(out).data_ptr<acc_t>();
  p.p_no = std::get<1>(out).data_ptr<acc_t>();
  p.p_other = std::get<2>(out).data_ptr<acc_t>();
  p.score = std::get<3>(out).data_ptr<acc_t>();
  p.relevance = std::get<4>(out).data_ptr<acc_t>();
  return p;
}

JudgeScoresResult judge_scores_cuda(const at::Tensor& hidden, const at::Tensor& weight,
                                    const std::optional<at::Tensor>& bias, const at::Tensor& ids,
                                    int64_t n_yes, int64_t n_no, c10::string_view normalize) {
  const c10::cuda::CUDAGuard guard(hidden.device());
  // The checks read hidden's finiteness and the ids on the host: the op's one synchronisation.
  const JudgeScoresInputs in =
      prepare_judge_scores(hidden, weight, bias, ids, n_yes, n_no, std::string(normalize));
  JudgeScoresResult out = empty_judge_scores_outputs(in);
  if (in.hidden.size(0) == 0) return out;
  const Workspace ws = workspace(in);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const cuda::HiddenType type = hidden_type(in.hidden.scalar_type());
  const cudaError_t err = in.acc_type == at::kDouble
                              ? cuda::launch_judge_scores(type, params<double>(in, ws, out), stream)
                              : cuda::launch_judge_scores(type, params<float>(in, ws, out), stream);
  TORCH_CHECK(err == cudaSuccess, "judge_scores: CUDA launch failed: ", cudaGetErrorString(err));
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(ramo, CUDA, m) { m.impl("judge_scores", &judge_scores_cuda); }

}  // namespace ramo
