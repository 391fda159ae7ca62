// The host emulation of a CUDA launch declared in cuda_runtime.h: a launch's blocks run one
// after another; a block's threads are fibers (ucontext) on the calling thread. A fiber runs
// until it reaches a barrier or a warp operation, or exits; when every fiber has stopped,
// the warps whose live lanes all wait in a warp operation get its results, else, when every
// live thread waits at the block barrier, the barrier opens; when neither can happen, the
// block has deadlocked and the launch fails. What a warp operation or a barrier hands back
// (shuffled values, votes) is fixed when it opens, before any thread runs on.
//
// On x86-64 a fiber switch is a few instructions (ramo_simt_switch below); elsewhere, and
// where shadow stacks may be enforced (CET), it is ucontext's swapcontext, which also saves
// the signal mask with a system call per switch and made the tests several times slower.
#include <sys/mman.h>
#include <unistd.h>

#if defined(__x86_64__) && !defined(__CET__)
#define RAMO_SIMT_SWITCH 1
#else
#include <ucontext.h>
#endif

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <utility>
#include <vector>

#include "cuda_runtime.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#define RAMO_SIMT_ASAN 1
#endif

#if defined(RAMO_SIMT_SWITCH)
// ramo_simt_switch(save, next): pushes the callee-saved registers, stores the stack pointer
// in *save, switches to the stack `next` (as saved by an earlier call, or as made by
// Context::start) and pops its registers: returns where that stack last switched away.
extern "C" void ramo_simt_switch(void** save, void* next);
asm(R"(
  .pushsection .text
  .globl ramo_simt_switch
  .type ramo_simt_switch, @function
ramo_simt_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size ramo_simt_switch, .-ramo_simt_switch
  .popsection
)");
#endif

namespace simt {
namespace {

constexpr size_t kStackBytes = 128 * 1024;

// Where a fiber (or the scheduler) resumes.
#if defined(RAMO_SIMT_SWITCH)
struct Context {
  void* sp = nullptr;
  // A fresh stack whose first switch "returns" into entry, with the stack aligned as after a
  // call (entry must never return).
  void start(char* stack, size_t size, void (*entry)()) {
    auto top = reinterpret_cast<uintptr_t>(stack + size) & ~uintptr_t{15};
    void** frame = reinterpret_cast<void**>(top - 16);  // entry's address; 0 above it
    frame[0] = reinterpret_cast<void*>(entry);
    frame[1] = nullptr;
    for (int i = 1; i <= 6; ++i) frame[-i] = nullptr;  // the six registers popped first
    sp = frame - 6;
  }
};
void switch_context(Context& from, Context& to) { ramo_simt_switch(&from.sp, to.sp); }
#else
struct Context {
  ucontext_t uc;
  void start(char* stack, size_t size, void (*entry)()) {
    getcontext(&uc);
    uc.uc_stack.ss_sp = stack;
    uc.uc_stack.ss_size = size;
    uc.uc_link = nullptr;
    makecontext(&uc, entry, 0);
  }
};
void switch_context(Context& from, Context& to) { swapcontext(&from.uc, &to.uc); }
#endif

enum class Wait { kRunnable, kWarp, kBlock, kExited };
enum class Op { kShuffle, kShuffleXor, kAny, kSync, kSyncOr };

struct Fiber {
  Context context;
  dim3 index;
  int warp = 0;
  int lane = 0;
  Wait wait = Wait::kRunnable;
  // The operation it waits in, what it gives and what it gets back.
  Op op = Op::kSync;
  unsigned mask = 0;
  int source = 0;
  uint64_t give = 0;
  uint64_t got = 0;
  bool predicate = false;
#if defined(RAMO_SIMT_ASAN)
  void* fake_stack = nullptr;
#endif
};

// The fibers' stacks, each above a guard page (an overflow faults instead of writing over
// the next stack).
class Stacks {
 public:
  ~Stacks() { release(); }
  void reserve(size_t count) {
    if (count <= count_) return;
    release();
    const size_t bytes = count * stride();
    void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
      std::perror("simt: mmap of the fiber stacks");
      std::abort();
    }
    base_ = static_cast<char*>(p);
    count_ = count;
    for (size_t i = 0; i < count; ++i) mprotect(base_ + i * stride(), page(), PROT_NONE);
  }
  char* at(size_t i) const { return base_ + i * stride() + page(); }
  // After fibers were abandoned mid-kernel: AddressSanitizer's marks on their frames would
  // make the next fibers' fresh frames look overrun.
  void unpoison() const {
#if defined(RAMO_SIMT_ASAN)
    for (size_t i = 0; i < count_; ++i) ASAN_UNPOISON_MEMORY_REGION(at(i), kStackBytes);
#endif
  }

 private:
  static size_t page() { return static_cast<size_t>(sysconf(_SC_PAGESIZE)); }
  static size_t stride() { return kStackBytes + page(); }
  void release() {
    if (base_) munmap(base_, count_ * stride());
    base_ = nullptr;
    count_ = 0;
  }
  char* base_ = nullptr;
  size_t count_ = 0;
};

// The running launch: one at a time.
struct Launch {
  const std::function<void()>* kernel = nullptr;
  dim3 block_index, block_dim, grid_dim;
  std::vector<Fiber> fibers;
  Stacks stacks;
  std::vector<unsigned char> shared;
  // The block's static shared arrays by declaration site, and their bytes in all.
  std::vector<std::pair<int, std::vector<unsigned char>>> statics;
  size_t static_bytes = 0;
  // Set by a fiber that misused the emulation: the block fails once every fiber stops.
  bool error = false;
  Context scheduler;
  Fiber* current = nullptr;
#if defined(RAMO_SIMT_ASAN)
  const void* scheduler_stack = nullptr;
  size_t scheduler_stack_size = 0;
#endif
};

Launch g;
Order g_order = Order::kForward;
unsigned char g_shared_fill = 0xff;
// What cudaDeviceGetAttribute reports: launchers size their grids by it.
constexpr int kMultiprocessors = 2;
cudaError_t g_last_error = cudaSuccess;
const dim3 kZero{0, 0, 0};

// Fails the running block (the first failure is the one reported).
void fail(const char* what) {
  if (!g.error) {
    std::fprintf(stderr, "simt: block (%u, %u, %u): %s\n", g.block_index.x, g.block_index.y,
                 g.block_index.z, what);
  }
  g.error = true;
}

void to_scheduler(bool exiting) {
  Fiber* f = g.current;
#if defined(RAMO_SIMT_ASAN)
  __sanitizer_start_switch_fiber(exiting ? nullptr : &f->fake_stack, g.scheduler_stack,
                                 g.scheduler_stack_size);
#else
  (void)exiting;
#endif
  switch_context(f->context, g.scheduler);
#if defined(RAMO_SIMT_ASAN)
  __sanitizer_finish_switch_fiber(f->fake_stack, nullptr, nullptr);
#endif
}

void fiber_main() {
#if defined(RAMO_SIMT_ASAN)
  __sanitizer_finish_switch_fiber(nullptr, &g.scheduler_stack, &g.scheduler_stack_size);
#endif
  (*g.kernel)();
  g.current->wait = Wait::kExited;
  to_scheduler(true);
}

void resume(size_t i) {
  Fiber& f = g.fibers[i];
  g.current = &f;
#if defined(RAMO_SIMT_ASAN)
  void* fake_stack = nullptr;
  __sanitizer_start_switch_fiber(&fake_stack, g.stacks.at(i), kStackBytes);
#endif
  switch_context(g.scheduler, f.context);
#if defined(RAMO_SIMT_ASAN)
  __sanitizer_finish_switch_fiber(fake_stack, nullptr, nullptr);
#endif
  g.current = nullptr;
}

// Stops the calling fiber in op until the scheduler opens it.
Fiber& wait_in(Wait wait, Op op) {
  Fiber& f = *g.current;
  f.wait = wait;
  f.op = op;
  to_scheduler(false);
  return f;
}

// Opens the warp's operation if every live lane waits in it; false if some lane is elsewhere
// or (failing the block) on a misuse that a GPU leaves undefined.
bool open_warp(size_t first, size_t last) {
  unsigned live = 0;
  const Fiber* any_waiting = nullptr;
  for (size_t i = first; i < last; ++i) {
    const Fiber& f = g.fibers[i];
    if (f.wait == Wait::kExited) continue;
    if (f.wait != Wait::kWarp) return false;
    live |= 1u << f.lane;
    any_waiting = &f;
  }
  if (!any_waiting) return false;
  for (size_t i = first; i < last; ++i) {
    const Fiber& f = g.fibers[i];
    if (f.wait != Wait::kWarp) continue;
    if (f.op != any_waiting->op || f.mask != any_waiting->mask) {
      fail("lanes of one warp wait in different warp operations");
      return false;
    }
    if (f.mask != live) {
      fail("a warp operation's mask is not the set of the warp's live lanes");
      return false;
    }
  }
  bool vote = false;
  for (size_t i = first; i < last; ++i) vote |= g.fibers[i].wait == Wait::kWarp && g.fibers[i].predicate;
  for (size_t i = first; i < last; ++i) {
    Fiber& f = g.fibers[i];
    if (f.wait != Wait::kWarp) continue;
    if (f.op == Op::kAny) {
      f.predicate = vote;
    } else {
      const int source = f.op == Op::kShuffleXor ? (f.lane ^ f.source) : f.source;
      if (source < 0 || source >= kWarpSize || !((live >> source) & 1u)) {
        fail("a shuffle reads a lane outside the warp's live lanes");
        return false;
      }
      f.got = g.fibers[first + static_cast<size_t>(source)].give;
    }
  }
  for (size_t i = first; i < last; ++i) {
    if (g.fibers[i].wait == Wait::kWarp) g.fibers[i].wait = Wait::kRunnable;
  }
  return true;
}

// Opens the block barrier if every live thread waits at it.
bool open_block() {
  bool vote = false;
  const Fiber* first = nullptr;
  for (const Fiber& f : g.fibers) {
    if (f.wait == Wait::kExited) continue;
    if (f.wait != Wait::kBlock) return false;
    if (first && f.op != first->op) {
      fail("threads wait at __syncthreads and __syncthreads_or at once");
      return false;
    }
    first = &f;
    vote |= f.predicate;
  }
  if (!first) return false;
  for (Fiber& f : g.fibers) {
    if (f.wait != Wait::kBlock) continue;
    f.predicate = vote;
    f.wait = Wait::kRunnable;
  }
  return true;
}

bool run_block() {
  const size_t threads = g.fibers.size();
  std::fill(g.shared.begin(), g.shared.end(), g_shared_fill);
  g.statics.clear();
  g.static_bytes = 0;
  for (size_t i = 0; i < threads; ++i) {
    Fiber& f = g.fibers[i];
    f = Fiber{};
    f.index = dim3(static_cast<unsigned>(i % g.block_dim.x),
                   static_cast<unsigned>(i / g.block_dim.x % g.block_dim.y),
                   static_cast<unsigned>(i / (g.block_dim.x * g.block_dim.y)));
    f.warp = static_cast<int>(i / kWarpSize);
    f.lane = static_cast<int>(i % kWarpSize);
    f.context.start(g.stacks.at(i), kStackBytes, fiber_main);
  }
  for (;;) {
    for (size_t n = 0; n < threads; ++n) {
      const size_t i = g_order == Order::kForward ? n : threads - 1 - n;
      if (g.fibers[i].wait == Wait::kRunnable) resume(i);
    }
    if (g.error) return false;
    if (std::all_of(g.fibers.begin(), g.fibers.end(),
                    [](const Fiber& f) { return f.wait == Wait::kExited; })) {
      return true;
    }
    bool opened = false;
    for (size_t first = 0; first < threads && !g.error; first += kWarpSize) {
      opened |= open_warp(first, std::min(threads, first + kWarpSize));
    }
    if (!opened && !g.error) opened = open_block();
    if (g.error) return false;
    if (!opened) {
      fail("deadlock: some threads wait at a barrier or warp operation that the others never reach");
      return false;
    }
  }
}

bool valid_config(const Config& c) {
  const uint64_t threads = uint64_t{c.block.x} * c.block.y * c.block.z;
  return c.grid.x >= 1 && c.grid.x <= 0x7fffffffu && c.grid.y >= 1 && c.grid.y <= 65535 &&
         c.grid.z >= 1 && c.grid.z <= 65535 && threads >= 1 && threads <= 1024 &&
         c.block.z <= 64;
}

}  // namespace

void launch(const Config& config, const std::function<void()>& kernel) {
  if (g.kernel) {
    fail("a launch from inside a kernel");  // fails the launch that runs the kernel
    return;
  }
  if (!valid_config(config)) {
    std::fprintf(stderr, "simt: invalid launch: grid (%u, %u, %u), block (%u, %u, %u)\n",
                 config.grid.x, config.grid.y, config.grid.z, config.block.x, config.block.y,
                 config.block.z);
    g_last_error = cudaErrorInvalidConfiguration;
    return;
  }
  if (config.shared > kMaxDynamicShared) {
    std::fprintf(stderr, "simt: %zu bytes of dynamic shared memory, more than %zu\n",
                 config.shared, kMaxDynamicShared);
    g_last_error = cudaErrorInvalidValue;
    return;
  }
  const size_t threads = size_t{config.block.x} * config.block.y * config.block.z;
  g.fibers.assign(threads, Fiber{});
  g.stacks.reserve(threads);
  g.shared = std::vector<unsigned char>(config.shared);  // exactly its size: ASan sees overruns
  g.grid_dim = config.grid;
  g.block_dim = config.block;
  g.kernel = &kernel;
  g.error = false;
  for (unsigned z = 0; z < config.grid.z && !g.error; ++z) {
    for (unsigned y = 0; y < config.grid.y && !g.error; ++y) {
      for (unsigned x = 0; x < config.grid.x && !g.error; ++x) {
        g.block_index = dim3(x, y, z);
        if (!run_block()) g.error = true;
      }
    }
  }
  if (g.error) {
    g_last_error = cudaErrorLaunchFailure;
    g.stacks.unpoison();
  }
  g.statics.clear();
  g.kernel = nullptr;
}

void set_order(Order order) { g_order = order; }
void set_shared_fill(unsigned char fill) { g_shared_fill = fill; }

const dim3& thread_index() { return g.current ? g.current->index : kZero; }
const dim3& block_index() { return g.block_index; }
const dim3& block_dim() { return g.block_dim; }
const dim3& grid_dim() { return g.grid_dim; }
unsigned char* dynamic_shared() { return g.shared.data(); }

void* static_shared(int site, size_t bytes) {
  for (auto& s : g.statics) {
    if (s.first == site) return s.second.data();
  }
  g.static_bytes += bytes;
  if (g.static_bytes + g.shared.size() > kMaxDynamicShared) {
    fail("more than 48 KB of shared memory, static and dynamic");
  }
  g.statics.emplace_back(site, std::vector<unsigned char>(bytes, g_shared_fill));
  return g.statics.back().second.data();
}

void syncthreads() { wait_in(Wait::kBlock, Op::kSync); }

bool syncthreads_or(bool predicate) {
  g.current->predicate = predicate;
  return wait_in(Wait::kBlock, Op::kSyncOr).predicate;
}

uint64_t shuffle(unsigned mask, uint64_t bits, int lane, int width, bool xor_lane) {
  Fiber& f = *g.current;
  if (width != kWarpSize) fail("a shuffle narrower than a warp (not emulated)");
  f.mask = mask;
  f.give = bits;
  f.source = lane;
  return wait_in(Wait::kWarp, xor_lane ? Op::kShuffleXor : Op::kShuffle).got;
}

bool any(unsigned mask, bool predicate) {
  Fiber& f = *g.current;
  f.mask = mask;
  f.predicate = predicate;
  return wait_in(Wait::kWarp, Op::kAny).predicate;
}

}  // namespace simt

cudaError_t cudaGetLastError() {
  const cudaError_t error = simt::g_last_error;
  simt::g_last_error = cudaSuccess;
  return error;
}

cudaError_t cudaGetDevice(int* device) {
  *device = 0;
  return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device) {
  if (attr != cudaDevAttrMultiProcessorCount || device != 0) return cudaErrorInvalidValue;
  *value = simt::kMultiprocessors;
  return cudaSuccess;
}
