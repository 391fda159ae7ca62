// Launcher of the CUDA select_rules kernel (docs/architecture.md, "select_rules"). Plain
// pointers and the CUDA runtime only, so this header and select_rules.cu compile with nvcc
// alone; the torch glue that fills SelectRulesParams lives in csrc/cuda/select_rules.cpp.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "acc_types.h"           // ScoreType
#include "select_rules_steps.h"  // SelectRulesParams

namespace ramo {
namespace cuda {

// Which kernel the launcher takes (select_rules.cu says how each works):
// A thread per row from here on (up to kWarpPathMaxR rules): at 4096 rows that is only 32
// blocks of 128 threads, a quarter of an H200's SMs, but each thread scans at most 1024
// rules at about 15 instructions each, against the warp path's shuffle merges. The
// crossover is a guess from those instruction counts, not yet measured.
constexpr int64_t kThreadPathMinRows = 4096;
// Up to here a lane sees at most 32 rules of a row, so a warp per row keeps the lists short
// and the block free of barriers; beyond it a row needs more threads to be read quickly
// (a block per row).
constexpr int64_t kWarpPathMaxR = 1024;

cudaError_t launch_select_rules(ScoreType type, const SelectRulesParams<float>& p,
                                cudaStream_t stream);
cudaError_t launch_select_rules(ScoreType type, const SelectRulesParams<double>& p,
                                cudaStream_t stream);

}  // namespace cuda
}  // namespace ramo
