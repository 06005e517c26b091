// Searches of a usearch HNSW graph file for several queries at once: best_score's first round,
// one search per positive example. Each walks as usearch's own search does (greedily down the upper
// levels, then a beam of `expansion` over the base level) and answers as it does, but the walks
// take turns on a thread: each asks for its next neighbours' vectors from memory, and scores them
// on its next turn, while the others score theirs. At a million posters (f16, 512 dimensions) a
// walk waits mostly on memory, and usearch's JavaScript binding waits on each miss in turn: for 3
// queries at expansion 48 it took 586–767 µs at p50 on two threads and 792–1,024 on one, these
// walks 457–477 on two and 553–556 on one (AVX2 EPYC, each call its own queries). The file is
// read through usearch's own graph type (index_gt::view), mapped, so its pages are the ones the
// binding's view of the same file already holds.
#include <napi.h>
#include <usearch/index_dense.hpp>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <queue>
#include <string>
#include <thread>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace {

using namespace unum::usearch;
using graph_t = index_gt<float, std::uint64_t, std::uint32_t>;
/** The key usearch gives a removed node, which stays in the graph as a way through. */
std::uint64_t const removed_key = default_free_value<std::uint64_t>();

/** usearch's graph header (index_serialized_header_t): the entry slot is not otherwise public. */
struct graph_header_t {
    std::uint64_t size, connectivity, connectivity_base, max_level, entry_slot;
};

float l2sq_portable(float const* a, float const* b, std::size_t n) {
    float sum = 0;
    for (std::size_t d = 0; d < n; d++) sum += (a[d] - b[d]) * (a[d] - b[d]);
    return sum;
}

#if defined(__x86_64__)
__attribute__((target("avx2,fma"))) float l2sq_avx2(float const* a, float const* b, std::size_t n) {
    __m256 acc = _mm256_setzero_ps();
    std::size_t d = 0;
    for (; d + 8 <= n; d += 8) {
        __m256 diff = _mm256_sub_ps(_mm256_loadu_ps(a + d), _mm256_loadu_ps(b + d));
        acc = _mm256_fmadd_ps(diff, diff, acc);
    }
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
    s = _mm_hadd_ps(s, s);
    s = _mm_hadd_ps(s, s);
    return _mm_cvtss_f32(s) + l2sq_portable(a + d, b + d, n - d);
}

__attribute__((target("avx2,f16c"))) void f16_to_f32_avx2(std::uint16_t const* in, float* out, std::size_t n) {
    std::size_t d = 0;
    for (; d + 8 <= n; d += 8)
        _mm256_storeu_ps(out + d, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<__m128i const*>(in + d))));
    for (; d < n; d++) out[d] = f16_t(reinterpret_cast<f16_t const*>(in)[d]);
}
#endif

void f16_to_f32_portable(std::uint16_t const* in, float* out, std::size_t n) {
    for (std::size_t d = 0; d < n; d++) out[d] = f16_t(reinterpret_cast<f16_t const*>(in)[d]);
}

bool has_avx2() {
#if defined(__x86_64__)
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
#else
    return false;
#endif
}

/**
 * A thread kept for the second half of a call's walks: woken for each call rather than started
 * for it (a start, as usearch's binding makes one per call, cost the slowest hundredth of calls).
 */
class helper_t {
    std::mutex mutex_;
    std::condition_variable wake_, finished_;
    std::function<void()> task_;
    bool busy_ = false, stopping_ = false;
    std::thread thread_;

    void loop() {
        std::unique_lock<std::mutex> lock(mutex_);
        for (;;) {
            wake_.wait(lock, [&] { return busy_ || stopping_; });
            if (stopping_) return;
            lock.unlock();
            task_();
            lock.lock();
            busy_ = false;
            finished_.notify_one();
        }
    }

  public:
    helper_t() : thread_([this] { loop(); }) {}
    ~helper_t() {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            stopping_ = true;
        }
        wake_.notify_one();
        thread_.join();
    }
    void start(std::function<void()> task) {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            task_ = std::move(task);
            busy_ = true;
        }
        wake_.notify_one();
    }
    void wait() {
        std::unique_lock<std::mutex> lock(mutex_);
        finished_.wait(lock, [&] { return !busy_; });
    }
};

class GraphWalk : public Napi::ObjectWrap<GraphWalk> {
  public:
    static Napi::Function Define(Napi::Env env) {
        return DefineClass(env, "GraphWalk", {InstanceMethod("searchEach", &GraphWalk::SearchEach), InstanceMethod("size", &GraphWalk::Size)});
    }

    /** new GraphWalk(file): the graph file as usearch saved it (f32 or f16 vectors, 64-bit keys, L2sq). */
    GraphWalk(Napi::CallbackInfo const& info) : Napi::ObjectWrap<GraphWalk>(info) {
        Napi::Env env = info.Env();
        if (info.Length() < 1 || !info[0].IsString()) {
            Napi::TypeError::New(env, "GraphWalk expects the graph file's path").ThrowAsJavaScriptException();
            return;
        }
        std::string path = info[0].As<Napi::String>();
        char const* error = open(path.c_str());
        if (error) Napi::Error::New(env, error).ThrowAsJavaScriptException();
    }

  private:
    /** Maps the file and checks it is a graph this walk reads; the reason when it is not. */
    char const* open(char const* path) {
        memory_mapped_file_t file(path);
        serialization_result_t opened = file.open_if_not();
        if (!opened) return opened.error.release();
        byte_t const* data = file.data();
        std::uint32_t matrix[2];  // rows, bytes per row
        if (file.size() < sizeof(matrix)) return "not a usearch file: no vectors matrix";
        std::memcpy(matrix, data, sizeof(matrix));
        std::size_t head_offset = sizeof(matrix) + std::size_t(matrix[0]) * matrix[1];
        if (file.size() < head_offset + sizeof(index_dense_head_buffer_t) + sizeof(graph_header_t))
            return "not a usearch file: too short";
        index_dense_head_buffer_t buffer;
        std::memcpy(buffer, data + head_offset, sizeof(buffer));
        index_dense_head_t head{buffer};
        if (std::memcmp(buffer, default_magic(), std::strlen(default_magic())) != 0)
            return "not a usearch file: no magic";
        if (head.version_major != USEARCH_VERSION_MAJOR) return "usearch file of another major version";
        if (head.kind_key != scalar_kind_t::u64_k || head.kind_compressed_slot != scalar_kind_t::u32_k)
            return "usearch file with other key or slot types";
        if (head.kind_metric != metric_kind_t::l2sq_k) return "usearch file with another metric than l2sq";
        half_ = head.kind_scalar == scalar_kind_t::f16_k;
        if (!half_ && head.kind_scalar != scalar_kind_t::f32_k) return "usearch file with vectors neither f32 nor f16";
        dims_ = static_cast<std::size_t>(head.dimensions);
        if (dims_ * (half_ ? 2 : 4) != matrix[1]) return "usearch file whose rows do not match its dimensions";
        graph_header_t header;
        std::size_t graph_offset = head_offset + sizeof(index_dense_head_buffer_t);
        std::memcpy(&header, data + graph_offset, sizeof(header));
        if (header.size != matrix[0]) return "usearch file whose graph and vectors differ in size";
        rows_ = matrix[0];
        row_bytes_ = matrix[1];
        vectors_ = data + sizeof(matrix);
        entry_ = static_cast<std::uint32_t>(header.entry_slot);
        if (rows_ > 0 && entry_ >= rows_) return "usearch file whose entry point is not among its nodes";
        has_removed_ = std::uint64_t(head.count_deleted) > 0;
        serialization_result_t viewed = graph_.view(std::move(file), graph_offset);  // the mapping moves, its pages stay
        if (!viewed) return viewed.error.release();
        fast_ = has_avx2();
        prefetch_lines_ = (std::min)(std::size_t(2), (row_bytes_ + 63) / 64);
        return nullptr;
    }

    graph_t graph_;
    byte_t const* vectors_ = nullptr;
    std::size_t rows_ = 0, row_bytes_ = 0, dims_ = 0;
    std::uint32_t entry_ = 0;
    bool half_ = false, fast_ = false;
    /** Whether the file holds removed nodes, whose keys the walk must then read to leave them out. */
    bool has_removed_ = false;
    /** Walks taken in turns at once: best_score's positives are usually 1 to 4. */
    static constexpr std::size_t kLanes = 4;
    /** The most threads one call walks on. */
    static constexpr std::size_t kThreads = 2;
    /**
     * The cache lines of each vector asked for ahead; the hardware's own prefetcher follows a row
     * from there. At a million f16 rows of 512, 3 queries took 611 µs at p50 with 2 lines, 672
     * with 1, 736 with 16 and 828 with none (AVX2 EPYC).
     */
    std::size_t prefetch_lines_ = 0;

    Napi::Value Size(Napi::CallbackInfo const& info) { return Napi::Number::New(info.Env(), double(graph_.size())); }

    /** The slot's vector as floats: in the file (f32), or converted into `buffer` (f16, dims floats). */
    float const* row(std::uint32_t slot, float* buffer) const {
        byte_t const* bytes = vectors_ + std::size_t(slot) * row_bytes_;
        if (!half_) return reinterpret_cast<float const*>(bytes);
        auto half = reinterpret_cast<std::uint16_t const*>(bytes);
#if defined(__x86_64__)
        if (fast_) {
            f16_to_f32_avx2(half, buffer, dims_);
            return buffer;
        }
#endif
        f16_to_f32_portable(half, buffer, dims_);
        return buffer;
    }

    float l2sq(float const* a, float const* b) const {
#if defined(__x86_64__)
        if (fast_) return l2sq_avx2(a, b, dims_);
#endif
        return l2sq_portable(a, b, dims_);
    }

    bool removed(std::uint32_t slot) const { return has_removed_ && graph_.at(slot).key == removed_key; }

    using candidate_t = std::pair<float, std::uint32_t>;
    using nearest_first_t = std::priority_queue<candidate_t, std::vector<candidate_t>, std::greater<candidate_t>>;
    using farthest_first_t = std::priority_queue<candidate_t>;

    /**
     * The slots one walk has visited: a small open-addressed set, as usearch's own walks keep, so
     * that a visit is a hit in cache (a flag per poster would be 4 MB a walk at a million).
     */
    class visited_t {
        std::vector<std::uint32_t> cells_;  // slot + 1, or 0 for empty
        std::size_t used_ = 0, bits_ = 0;

        std::size_t cell_of(std::uint32_t slot) const { return std::size_t((std::uint64_t(slot) * 0x9E3779B97F4A7C15ull) >> (64 - bits_)); }

        void grow() {
            std::vector<std::uint32_t> old = std::move(cells_);
            cells_.assign(old.size() * 2, 0);
            bits_++;
            used_ = 0;
            for (std::uint32_t cell : old)
                if (cell) insert(cell - 1);
        }

      public:
        void clear() {
            if (cells_.empty()) {
                bits_ = 12;
                cells_.assign(std::size_t(1) << bits_, 0);
            } else {
                std::fill(cells_.begin(), cells_.end(), 0);
            }
            used_ = 0;
        }

        /** Adds the slot; false when it was there already. */
        bool insert(std::uint32_t slot) {
            if (2 * (used_ + 1) > cells_.size()) grow();
            std::size_t mask = cells_.size() - 1;
            for (std::size_t cell = cell_of(slot);; cell = (cell + 1) & mask) {
                if (cells_[cell] == slot + 1) return false;
                if (cells_[cell] == 0) {
                    cells_[cell] = slot + 1;
                    used_++;
                    return true;
                }
            }
        }
    };

    /**
     * One query's walk of the base level, as usearch's: the nearest unexpanded candidate is
     * expanded until none is nearer than the beam's farthest. Its visited set is its lane's.
     */
    struct walk_t {
        float const* query = nullptr;
        visited_t* visited = nullptr;
        nearest_first_t frontier;
        farthest_first_t beam;
        /** Neighbours asked for from memory and not yet scored. */
        std::vector<std::uint32_t> pending;
        /** Where an f16 vector is converted to score it. */
        std::vector<float> buffer;
        bool done = false;
    };

    std::unique_ptr<helper_t> helper_;
    /** The visited sets of the walks taken at once, kept between calls. */
    std::vector<visited_t> lanes_;

    /** The slot where a greedy descent of the upper levels for the query ends, and its distance. */
    candidate_t descend(float const* query, float* buffer) const {
        candidate_t at{l2sq(query, row(entry_, buffer)), entry_};
        for (std::size_t level = graph_.max_level(); level >= 1; level--) {
            for (bool moved = true; moved;) {
                moved = false;
                for (auto neighbor : graph_.neighbors(at.second, level)) {
                    std::uint32_t slot = static_cast<std::uint32_t>(neighbor.slot);
                    float d = l2sq(query, row(slot, buffer));
                    if (d < at.first) {
                        at = {d, slot};
                        moved = true;
                    }
                }
            }
        }
        return at;
    }

    /** Pops candidates until one has unvisited neighbours, marks them visited and asks for their vectors; done when none is left worth expanding. */
    void expand(walk_t& walk, std::size_t width) {
        while (walk.pending.empty()) {
            if (walk.frontier.empty()) return void(walk.done = true);
            candidate_t next = walk.frontier.top();
            if (walk.beam.size() >= width && next.first > walk.beam.top().first) return void(walk.done = true);
            walk.frontier.pop();
            for (auto neighbor : graph_.neighbors(next.second, 0)) {
                std::uint32_t slot = static_cast<std::uint32_t>(neighbor.slot);
                if (!walk.visited->insert(slot)) continue;
                walk.pending.push_back(slot);
                byte_t const* bytes = vectors_ + std::size_t(slot) * row_bytes_;
                for (std::size_t line = 0; line < prefetch_lines_; line++) __builtin_prefetch(bytes + 64 * line);
            }
        }
    }

    /**
     * Scores the neighbours last asked for. A removed poster is walked through and never counted
     * among the nearest, as in usearch's search; its key is read only in a file that has any.
     */
    void score(walk_t& walk, std::size_t width) {
        for (std::uint32_t slot : walk.pending) {
            float d = l2sq(walk.query, row(slot, walk.buffer.data()));
            if (walk.beam.size() < width || d < walk.beam.top().first) {
                walk.frontier.emplace(d, slot);
                if (removed(slot)) continue;
                walk.beam.emplace(d, slot);
                if (walk.beam.size() > width) walk.beam.pop();
            }
        }
        walk.pending.clear();
    }

    /**
     * Up to `lanes` queries' nearest `width`, nearest first, into found[j]. Their walks take turns:
     * each scores the vectors it asked for on its last turn, then asks for its next candidate's
     * neighbours, so that one walk's waits on memory pass while the others score.
     */
    void nearest(float const* const* queries, std::size_t m, std::size_t width, std::vector<candidate_t>* found, std::size_t first_lane) {
        walk_t walks[kLanes];
        for (std::size_t j = 0; j < m; j++) {
            walk_t& walk = walks[j];
            walk.visited = &lanes_[first_lane + j];
            walk.visited->clear();
            walk.query = queries[j];
            walk.buffer.resize(dims_);
            candidate_t start = descend(walk.query, walk.buffer.data());
            walk.visited->insert(start.second);
            walk.frontier.push(start);
            if (!removed(start.second)) walk.beam.push(start);
            expand(walk, width);
        }
        for (std::size_t active = m; active > 0;) {
            active = 0;
            for (std::size_t j = 0; j < m; j++) {
                if (walks[j].done) continue;
                score(walks[j], width);
                expand(walks[j], width);
                active += !walks[j].done;
            }
        }
        for (std::size_t j = 0; j < m; j++) {
            found[j].clear();
            for (; !walks[j].beam.empty(); walks[j].beam.pop()) found[j].push_back(walks[j].beam.top());
            std::reverse(found[j].begin(), found[j].end());
        }
    }

    /**
     * searchEach(queries: Float32Array of m × dims, count, expansion) → [keys: BigUint64Array,
     * distances: Float32Array (squared), counts: Uint32Array]: query j's nearest `counts[j]` (at most
     * `count`) at j × count, nearest first, each walk keeping max(count, expansion) candidates.
     */
    Napi::Value SearchEach(Napi::CallbackInfo const& info) {
        Napi::Env env = info.Env();
        if (info.Length() < 3 || !info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array ||
            !info[1].IsNumber() || !info[2].IsNumber()) {
            Napi::TypeError::New(env, "searchEach expects (queries: Float32Array, count, expansion)").ThrowAsJavaScriptException();
            return env.Null();
        }
        Napi::Float32Array queries = info[0].As<Napi::Float32Array>();
        std::size_t m = queries.ElementLength() / dims_;
        if (m == 0 || m * dims_ != queries.ElementLength()) {
            Napi::TypeError::New(env, "searchEach expects whole queries of the graph's dimensions").ThrowAsJavaScriptException();
            return env.Null();
        }
        std::size_t count = info[1].As<Napi::Number>().Uint32Value();
        std::size_t expansion = (std::max)(count, std::size_t(info[2].As<Napi::Number>().Uint32Value()));
        Napi::BigUint64Array keys = Napi::BigUint64Array::New(env, m * count);
        Napi::Float32Array distances = Napi::Float32Array::New(env, m * count);
        Napi::Uint32Array counts = Napi::Uint32Array::New(env, m);
        std::size_t threads = info.Length() > 3 && info[3].IsNumber() ? info[3].As<Napi::Number>().Uint32Value() : 1;
        threads = (std::max<std::size_t>)(1, (std::min<std::size_t>)({threads, m, kThreads}));
        if (lanes_.size() < threads * kLanes) lanes_.resize(threads * kLanes);
        float const* queries_data = queries.Data();
        std::uint64_t* keys_data = keys.Data();
        float* distances_data = distances.Data();
        std::uint32_t* counts_data = counts.Data();
        // Thread t takes queries [t·m/threads, (t+1)·m/threads), kLanes at a time, in its own lanes.
        auto walk_part = [&](std::size_t t) {
            std::vector<candidate_t> found[kLanes];
            float const* group_queries[kLanes];
            for (std::size_t first = t * m / threads, end = (t + 1) * m / threads; first < end && rows_ > 0 && count > 0; first += kLanes) {
                std::size_t group = (std::min)(kLanes, end - first);
                for (std::size_t j = 0; j < group; j++) group_queries[j] = queries_data + (first + j) * dims_;
                nearest(group_queries, group, expansion, found, t * kLanes);
                for (std::size_t j = 0; j < group; j++) {
                    std::size_t n = (std::min)(count, found[j].size());
                    for (std::size_t i = 0; i < n; i++) {
                        keys_data[(first + j) * count + i] = graph_.at(found[j][i].second).key;
                        distances_data[(first + j) * count + i] = found[j][i].first;
                    }
                    counts_data[first + j] = static_cast<std::uint32_t>(n);
                }
            }
        };
        std::atomic<bool> failed{false};
        auto part = [&](std::size_t t) {
            try {
                walk_part(t);
            } catch (...) {  // out of memory: the other thread still finishes before the call returns
                failed = true;
            }
        };
        if (threads > 1) {
            if (!helper_) helper_ = std::make_unique<helper_t>();
            helper_->start([&] { part(1); });
            part(0);
            helper_->wait();
        } else {
            part(0);
        }
        if (failed) {
            Napi::Error::New(env, "searchEach ran out of memory").ThrowAsJavaScriptException();
            return env.Null();
        }
        Napi::Array out = Napi::Array::New(env, 3);
        out.Set(0u, keys);
        out.Set(1u, distances);
        out.Set(2u, counts);
        return out;
    }
};

Napi::Object Init(Napi::Env env, Napi::Object exports) {
    exports.Set("GraphWalk", GraphWalk::Define(env));
    return exports;
}

}  // namespace

NODE_API_MODULE(graph_walk, Init)
