// CUDA implementation of ramo::judge_scores: the listed ids' logits and the vocabulary chunks'
// logits from cuBLAS (judge_listed_logits and for_each_vocab_chunk in csrc/judge_scores.cpp),
// folded and finished by the kernels of kernels/cuda/judge_scores.cu. Built only when torch
// has CUDA (setup.py defines RAMO_WITH_CUDA then).
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "../../kernels/cuda/judge_scores.cuh"
#include "../judge_scores.h"
#include "device_guard.h"

namespace ramo {

namespace {

namespace fold = cuda::judge_scores_steps;

void check_launch(cudaError_t err) {
  TORCH_CHECK(err == cudaSuccess, "judge_scores: CUDA launch failed: ", cudaGetErrorString(err));
}

template <typename acc_t>
void run(const JudgeScoresInputs& in, JudgeScoresResult& out, cudaStream_t stream) {
  const int64_t b = in.hidden.size(0), v = in.weight.size(0);
  const at::Tensor hidden_acc = in.hidden.to(in.acc_type).contiguous();
  const at::Tensor listed = judge_listed_logits(in, hidden_acc);
  cuda::JudgeScoresFinishParams<acc_t> p{};
  // [segments, b] partial states of the vocabulary's segments: a few KB, against the [b, v]
  // logits that are never made.
  at::Tensor part_max, part_sum;
  if (!in.choices) {
    p.segments = fold::segments_of(v);
    part_max = at::empty({p.segments, b}, hidden_acc.options());
    part_sum = at::empty({p.segments, b}, hidden_acc.options());
    const int64_t chunk = fold::chunk_columns(b, v);
    for_each_vocab_chunk(in, hidden_acc, chunk, [&](const at::Tensor& logits, int64_t v0) {
      cuda::JudgeScoresFoldParams<acc_t> f{};
      f.logits = logits.const_data_ptr<acc_t>();
      f.bias = in.bias.has_value() ? in.bias->const_data_ptr<acc_t>() + v0 : nullptr;
      f.b = b;
      f.c = logits.size(1);
      f.first_segment = v0 / fold::kSegmentCols;  // chunks are whole segments (or all of V)
      f.part_max = part_max.data_ptr<acc_t>();
      f.part_sum = part_sum.data_ptr<acc_t>();
      // Queued on the stream of the chunk's matmul, so the next chunk's matmul writes the
      // buffer only after this fold has read it.
      check_launch(cuda::launch_judge_scores_fold(f, stream));
    });
    p.part_max = part_max.const_data_ptr<acc_t>();
    p.part_sum = part_sum.const_data_ptr<acc_t>();
  }
  p.listed = listed.const_data_ptr<acc_t>();
  p.b = b;
  p.n_listed = in.ids.size(0);
  p.n_yes = in.n_yes;
  p.n_no = in.n_no;
  p.choices = in.choices;
  p.p_yes = std::get<0>(out).data_ptr<acc_t>();
  p.p_no = std::get<1>(out).data_ptr<acc_t>();
  p.p_other = std::get<2>(out).data_ptr<acc_t>();
  p.score = std::get<3>(out).data_ptr<acc_t>();
  p.relevance = std::get<4>(out).data_ptr<acc_t>();
  check_launch(cuda::launch_judge_scores_finish(p, stream));
}

JudgeScoresResult judge_scores_cuda(const at::Tensor& hidden, const at::Tensor& weight,
                                    const std::optional<at::Tensor>& bias, const at::Tensor& ids,
                                    int64_t n_yes, int64_t n_no, c10::string_view normalize) {
  const auto guard = guard_device_of(hidden);
  // The checks read the ids, hidden's finiteness and (with a bias) the bias's on the host: two
  // synchronisations, four with a bias, small beside the judge's forward pass before each call.
  const JudgeScoresInputs in =
      prepare_judge_scores(hidden, weight, bias, ids, n_yes, n_no, std::string(normalize));
  JudgeScoresResult out = empty_judge_scores_outputs(in);
  if (in.hidden.size(0) == 0) return out;
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  if (in.acc_type == at::kDouble) {
    run<double>(in, out, stream);
  } else {
    run<float>(in, out, stream);
  }
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(ramo, CUDA, m) { m.impl("judge_scores", &judge_scores_cuda); }

}  // namespace ramo
