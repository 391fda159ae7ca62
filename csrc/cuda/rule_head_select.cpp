// CUDA implementation of ramo::rule_head_select (two cuBLAS addmm + the CUDA select_rules
// kernel, csrc/rule_head_select.cpp) and of ramo::rule_head_select_backward: torch glue around
// kernels/cuda/rule_head_select.cu. Built only when torch has CUDA (RAMO_WITH_CUDA).
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "../../kernels/cuda/rule_head_select.cuh"
#include "../rule_head_select.h"
#include "device_guard.h"
#include "score_type.h"

namespace ramo {

namespace {

template <typename acc_t>
cudaError_t launch(const RuleHeadBackwardInputs& in, at::Tensor& gha, at::Tensor& ghb,
                   at::Tensor& gw, at::Tensor& gbias, cudaStream_t stream) {
  cuda::RuleHeadBackwardParams<acc_t> p{};
  p.grad_a = in.grad_a.data_ptr<acc_t>();
  p.grad_b = in.grad_b.data_ptr<acc_t>();
  p.indices = in.indices.data_ptr<int64_t>();
  p.hidden_a = in.hidden_a.data_ptr();
  p.hidden_b = in.hidden_b.data_ptr();
  p.weight = in.weight.data_ptr();
  p.grad_hidden_a = gha.data_ptr();
  p.grad_hidden_b = ghb.data_ptr();
  p.grad_weight = gw.data_ptr<acc_t>();
  p.grad_bias = gbias.data_ptr<acc_t>();
  p.n = in.n;
  p.d = in.d;
  p.r = in.r;
  p.k = static_cast<int>(in.k);
  return cuda::launch_rule_head_select_backward(score_type(in.hidden_a.scalar_type()), p, stream);
}

RuleHeadBackwardResult rule_head_select_backward_cuda(const at::Tensor& grad_reward_a,
                                                      const at::Tensor& grad_reward_b,
                                                      const at::Tensor& indices,
                                                      const at::Tensor& hidden_a,
                                                      const at::Tensor& hidden_b,
                                                      const at::Tensor& weight) {
  const auto guard = guard_device_of(hidden_a);
  const RuleHeadBackwardInputs in = prepare_rule_head_select_backward(
      grad_reward_a, grad_reward_b, indices, hidden_a, hidden_b, weight);
  const auto acc_opts = in.weight.options().dtype(in.acc_type);
  at::Tensor gha = at::empty({in.n, in.d}, in.hidden_a.options());
  at::Tensor ghb = at::empty({in.n, in.d}, in.hidden_b.options());
  at::Tensor gw = at::zeros({in.r, in.d}, acc_opts);
  at::Tensor gbias = at::zeros({in.r}, acc_opts);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const cudaError_t err = in.acc_type == at::kDouble
                              ? launch<double>(in, gha, ghb, gw, gbias, stream)
                              : launch<float>(in, gha, ghb, gw, gbias, stream);
  TORCH_CHECK(err == cudaSuccess, "rule_head_select_backward: CUDA launch failed: ",
              cudaGetErrorString(err));
  const auto dtype = in.weight.scalar_type();
  return {gha, ghb, gw.to(dtype), gbias.to(dtype)};
}

}  // namespace

TORCH_LIBRARY_IMPL(ramo, CUDA, m) {
  m.impl("rule_head_select", &rule_head_select_forward);
  m.impl("rule_head_select_backward", &rule_head_select_backward_cuda);
}

}  // namespace ramo
