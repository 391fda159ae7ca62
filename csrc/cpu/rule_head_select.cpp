// CPU implementation of ramo::rule_head_select (two addmm + the CPU select_rules kernel,
// csrc/rule_head_select.cpp) and of ramo::rule_head_select_backward: torch glue around
// rule_head_select_kernel.h.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "../rule_head_select.h"
#include "parallel_chunks.h"
#include "rule_head_select_kernel.h"

namespace ramo {

namespace {

RuleHeadBackwardResult rule_head_select_backward_cpu(const at::Tensor& grad_reward_a,
                                                     const at::Tensor& grad_reward_b,
                                                     const at::Tensor& indices,
                                                     const at::Tensor& hidden_a,
                                                     const at::Tensor& hidden_b,
                                                     const at::Tensor& weight) {
  const RuleHeadBackwardInputs in = prepare_rule_head_select_backward(
      grad_reward_a, grad_reward_b, indices, hidden_a, hidden_b, weight);
  const auto acc_opts = in.weight.options().dtype(in.acc_type);
  at::Tensor grad_hidden_a = at::empty({in.n, in.d}, in.hidden_a.options());
  at::Tensor grad_hidden_b = at::empty({in.n, in.d}, in.hidden_b.options());
  // grad_weight and grad_bias are accumulated in acc_t: in place for float / double weights,
  // in a workspace converted at the end otherwise.
  at::Tensor grad_weight = at::zeros({in.r, in.d}, acc_opts);
  at::Tensor grad_bias = at::zeros({in.r}, acc_opts);

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, in.hidden_a.scalar_type(),
                                  "rule_head_select_backward_cpu", [&] {
    using acc_t = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;
    cpu::RuleHeadBackwardArgs<scalar_t, acc_t> p{};
    p.n = in.n;
    p.d = in.d;
    p.r = in.r;
    p.k = in.k;
    p.grad_a = in.grad_a.data_ptr<acc_t>();
    p.grad_b = in.grad_b.data_ptr<acc_t>();
    p.indices = in.indices.data_ptr<int64_t>();
    p.hidden_a = in.hidden_a.data_ptr<scalar_t>();
    p.hidden_b = in.hidden_b.data_ptr<scalar_t>();
    p.weight = in.weight.data_ptr<scalar_t>();
    if (in.n == 0) return;

    scalar_t* gha = grad_hidden_a.data_ptr<scalar_t>();
    scalar_t* ghb = grad_hidden_b.data_ptr<scalar_t>();
    // Fixed blocks of rows (cpu::backward_block_rows), each with its own partial grad_weight
    // and grad_bias; the first block writes straight into the outputs.
    const int64_t rd = in.r * in.d;
    const int64_t block_rows = cpu::backward_block_rows(in.n, in.d, in.r, sizeof(acc_t));
    const int64_t blocks = (in.n + block_rows - 1) / block_rows;
    at::Tensor partial_w, partial_b;
    if (blocks > 1) {
      partial_w = at::empty({blocks - 1, in.r, in.d}, acc_opts);
      partial_b = at::empty({blocks - 1, in.r}, acc_opts);
    }
    acc_t* gw = grad_weight.data_ptr<acc_t>();
    acc_t* gb = grad_bias.data_ptr<acc_t>();
    cpu::parallel_chunks(blocks, [&](int64_t blk) {
      std::vector<acc_t> scratch(2 * in.d);
      acc_t* w_out = gw;
      acc_t* b_out = gb;
      if (blk > 0) {  // zeroed here, by the thread that fills it
        w_out = partial_w.data_ptr<acc_t>() + (blk - 1) * rd;
        b_out = partial_b.data_ptr<acc_t>() + (blk - 1) * in.r;
        std::fill(w_out, w_out + rd, acc_t(0));
        std::fill(b_out, b_out + in.r, acc_t(0));
      }
      cpu::backward_rows(p, gha, ghb, w_out, b_out, scratch.data(), blk * block_rows,
                         std::min(in.n, (blk + 1) * block_rows));
    });
    if (blocks > 1) {  // grad += partials, in block order, element by element
      const acc_t* pw = partial_w.data_ptr<acc_t>();
      at::parallel_for(0, rd, 4096, [&](int64_t begin, int64_t end) {
        cpu::add_partials(gw, pw, blocks - 1, rd, begin, end);
      });
      cpu::add_partials(gb, partial_b.data_ptr<acc_t>(), blocks - 1, in.r, 0, in.r);
    }
  });
  const auto dtype = in.weight.scalar_type();
  return {grad_hidden_a, grad_hidden_b, grad_weight.to(dtype), grad_bias.to(dtype)};
}

}  // namespace

TORCH_LIBRARY_IMPL(ramo, CPU, m) {
  m.impl("rule_head_select", &rule_head_select_forward);
  m.impl("rule_head_select_backward", &rule_head_select_backward_cpu);
}

}  // namespace ramo
