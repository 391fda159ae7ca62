// CUDA implementation of ramo::select_rules: torch glue around kernels/cuda/select_rules.cu.
// Built only when torch has CUDA (setup.py defines RAMO_WITH_CUDA then).
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "../../kernels/cuda/select_rules.cuh"
#include "../select_rules.h"
#include "device_guard.h"
#include "score_type.h"

namespace ramo {

namespace {

template <typename acc_t>
cuda::SelectRulesParams<acc_t> params(const SelectRulesInputs& in, SelectRulesResult& out,
                                      const at::Tensor& bad_row, int64_t k, double wd, double wr,
                                      double tol) {
  cuda::SelectRulesParams<acc_t> p{};
  fill_select_rules_args<acc_t>(p, in, out, k, wd, wr, tol);
  p.scores_a = in.scores_a.data_ptr();
  p.scores_b = in.scores_b.data_ptr();
  p.n = in.scores_a.size(0);
  p.bad_row = reinterpret_cast<unsigned long long*>(bad_row.data_ptr<int64_t>());
  return p;
}

SelectRulesResult select_rules_cuda(const at::Tensor& scores_a, const at::Tensor& scores_b,
                                    const std::optional<at::Tensor>& relevance,
                                    const std::optional<at::Tensor>& valid, int64_t k,
                                    double discrepancy_weight, double relevance_weight,
                                    double tie_tolerance) {
  const auto guard = guard_device_of(scores_a);
  // No check_shared_relevance: the kernel checks relevance (a shared [R] one too, masked by
  // each row's valid) with the scores, so bad_row is already the first row bad in any input,
  // and the flag read below is the op's one synchronisation.
  const SelectRulesInputs in =
      prepare_select_rules(scores_a, scores_b, relevance, valid, k, discrepancy_weight,
                           relevance_weight, tie_tolerance);
  SelectRulesResult out = empty_select_rules_outputs(in, k);
  const int64_t n = in.scores_a.size(0);
  if (n == 0) return out;

  const at::Tensor bad_row = at::full({1}, n, in.scores_a.options().dtype(at::kLong));
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const cudaError_t err =
      in.acc_type == at::kDouble
          ? cuda::launch_select_rules(
                score_type(in.scores_a.scalar_type()),
                params<double>(in, out, bad_row, k, discrepancy_weight, relevance_weight,
                               tie_tolerance),
                stream)
          : cuda::launch_select_rules(
                score_type(in.scores_a.scalar_type()),
                params<float>(in, out, bad_row, k, discrepancy_weight, relevance_weight,
                              tie_tolerance),
                stream);
  TORCH_CHECK(err == cudaSuccess, "select_rules: CUDA launch failed: ", cudaGetErrorString(err));
  // Reading the flag synchronises with the stream: the price of raising on NaN / inf.
  const int64_t bad = bad_row.item<int64_t>();
  if (bad < n) raise_non_finite(in, bad);
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(ramo, CUDA, m) { m.impl("select_rules", &select_rules_cuda); }

}  // namespace ramo
