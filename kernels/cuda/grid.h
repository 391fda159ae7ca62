// The largest grid a launcher asks for, beyond which its kernel's grid-stride loop takes the
// remaining rows. The host emulation of the C++ unit tests (csrc/tests/simt/cuda_runtime.h)
// caps it at a few blocks, so that those loops run there on small inputs.
#pragma once

#ifndef RAMO_GRID_CAP
#define RAMO_GRID_CAP(limit) (limit)
#endif
