#include "b2bua/redis_dialog_store.h"

#include <arpa/inet.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <charconv>
#include <deque>
#include <utility>

#include "b2bua/log.h"
#include "proto/str_util.h"

namespace b2bua {
namespace {

namespace asio = boost::asio;
using SteadyClock = std::chrono::steady_clock;
using AdoptDone = std::function<void(AdoptOutcome, std::optional<DialogRecord>)>;

// KEYS[1] the dialog; ARGV owner, data, TTL in ms. One script so that owner, data and the
// expiry land together: a reader never sees data without its owner, and a connection lost
// between two commands cannot leave a record that never expires.
constexpr std::string_view kSaveScript =
    "redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'data', ARGV[2]) "
    "return redis.call('PEXPIRE', KEYS[1], ARGV[3])";

// KEYS[1] the dialog; ARGV self, the key's first owner (OwnerOfKey), TTL in ms. Returns nil
// (no record), {0, owner} (someone else adopted it first) or {1, data} (ours now). The rule
// is documented on RedisDialogStore.
constexpr std::string_view kAdoptScript =
    "local v = redis.call('HMGET', KEYS[1], 'owner', 'data') "
    "if not v[2] then return false end "
    "if v[1] ~= ARGV[1] and v[1] ~= ARGV[2] then return {0, v[1] or ''} end "
    "if v[1] ~= ARGV[1] then redis.call('HSET', KEYS[1], 'owner', ARGV[1]) end "
    "redis.call('PEXPIRE', KEYS[1], ARGV[3]) "
    "return {1, v[2]}";

// Connection trouble comes in storms (every shard of every instance sees the same Redis
// go away): a few lines a second are enough to tell.
LogRateLimit connection_log_limit(5);

void Bump(std::atomic<uint64_t>& counter, uint64_t by = 1) {
  // fetch_add, not the single-writer load/store of Counter: a few commands per call make
  // the locked add free, and a stats struct shared by mistake still counts right.
  counter.fetch_add(by, std::memory_order_relaxed);
}

// PX/PEXPIRE argument: whole milliseconds, rounded up, at least 1 (0 would delete the key).
std::string_view TtlMs(proto::Duration ttl, char (&buffer)[24]) {
  const int64_t ms =
      std::max<int64_t>(1, std::chrono::ceil<std::chrono::milliseconds>(ttl).count());
  auto result = std::to_chars(buffer, buffer + sizeof(buffer), ms);
  return std::string_view(buffer, static_cast<size_t>(result.ptr - buffer));
}

bool IsIpLiteral(const std::string& host) {
  in6_addr address;
  return ::inet_pton(AF_INET, host.c_str(), &address) == 1 ||
         ::inet_pton(AF_INET6, host.c_str(), &address) == 1;
}

// An idle connection to a host that died would otherwise look connected until the next
// command times out. Set here, not with redisKeepAlive(), whose failure would mark the
// context broken; without keepalive the store still works.
void EnableKeepAlive(int fd) {
  int on = 1, idle = 15, interval = 5, count = 3;
  ::setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on));
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof(interval));
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof(count));
}

int64_t Ms(proto::Duration duration) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(duration).count();
}

enum class CommandKind : uint8_t { kSave, kRemove, kAdopt };

struct AdoptRequest {
  std::string key;
  std::string self;
  AdoptDone done;
};

// A command written to the connection whose reply has not come yet. hiredis answers the
// callbacks of one connection in the order the commands were sent, so the oldest is at
// the front.
struct Pending {
  CommandKind kind;
  SteadyClock::time_point sent_at;
  std::unique_ptr<AdoptRequest> adopt;  // kAdopt only
};

}  // namespace

class RedisDialogStore::Impl : public std::enable_shared_from_this<Impl> {
 public:
  Impl(asio::io_context& io, RedisStoreSettings settings, RedisStoreStats* stats)
      : io_(io),
        settings_(std::move(settings)),
        stats_(*stats),
        reconnect_timer_(io),
        watchdog_(io),
        backoff_(settings_.reconnect_min) {}

  ~Impl() { Shutdown(); }

  absl::Status Start();
  void Shutdown();
  void Save(const DialogRecord& record, proto::Duration ttl);
  void Remove(std::string_view key);
  void Adopt(std::string_view key, std::string_view self, proto::Duration ttl, AdoptDone done);
  bool connected() const { return link_ != nullptr && link_->connected; }

 private:
  // One hiredis connection and the Asio descriptor that watches its fd. A new Link per
  // connection attempt. hiredis holds raw pointers to it (ev.data, ac->data, privdata), so
  // every call into hiredis that can free the context (HandleRead, HandleWrite,
  // redisAsyncFree) is made while a shared_ptr to the Link is held on the stack or in the
  // calling handler: the Link outlives whatever hiredis does with it.
  struct Link : std::enable_shared_from_this<Link> {
    Link(Impl* owner, asio::io_context& io) : impl(owner), descriptor(io), batch(io) {}
    ~Link() {
      // The fd is hiredis's, never Asio's to close.
      if (descriptor.is_open()) descriptor.release();
    }

    // Valid while `gone` is false: hiredis only calls back from functions the Impl calls,
    // and the Impl frees the context (which sets `gone`) before it dies.
    Impl* const impl;
    redisAsyncContext* context = nullptr;  // null once hiredis has freed it
    asio::posix::stream_descriptor descriptor;
    asio::steady_timer batch;  // write_batch_window: when the buffered commands go out
    bool batch_armed = false;
    std::deque<Pending> pending;
    bool want_read = false;   // hiredis's addRead/delRead
    bool want_write = false;  // hiredis's addWrite/delWrite
    bool read_armed = false;
    bool write_armed = false;
    bool connected = false;  // the connect callback said OK
    bool answered = false;   // a reply came on it: the server works
    bool gone = false;       // hiredis's cleanup ran: the descriptor no longer holds the fd
  };

  // An Adopt() outcome waiting for its own handler.
  struct Completion {
    AdoptDone done;
    AdoptOutcome outcome;
    std::optional<DialogRecord> record;
  };

  // hiredis hooks (C function pointers); `data` is the Link.
  static void OnAddRead(void* data);
  static void OnDelRead(void* data);
  static void OnAddWrite(void* data);
  static void OnDelWrite(void* data);
  static void OnCleanup(void* data);
  static void OnConnectCallback(const redisAsyncContext* context, int status);
  static void OnReplyCallback(redisAsyncContext* context, void* reply, void* privdata);

  void Connect();
  void ScheduleReconnect();
  void OnConnected(Link& link, bool ok);
  void OnLinkGone(Link& link);
  void Teardown(RedisFailure reason, std::string why);
  void ArmRead(Link& link);
  void ArmWrite(Link& link);
  // write_batch_window: the buffered commands go out when it ends, or now.
  void ArmBatch(Link& link);
  void FlushNow(Link& link);
  void ArmWatchdog(SteadyClock::time_point deadline);
  void OnWatchdog();
  // Writes one command; false when hiredis refused it. Takes `*adopt` only on success.
  bool Send(CommandKind kind, std::initializer_list<std::string_view> args,
            std::unique_ptr<AdoptRequest>* adopt = nullptr);
  void OnReply(Link& link, const redisReply* reply);
  void OnAdoptReply(AdoptRequest& request, const redisReply& reply);
  void Fail(RedisFailure reason) { Bump(stats_.failures[static_cast<size_t>(reason)]); }
  void Complete(AdoptDone done, AdoptOutcome outcome, std::optional<DialogRecord> record);
  void DrainCompletions();
  void SetConnected(bool connected);
  void ObserveRoundTrip(SteadyClock::duration elapsed);
  std::string FullKey(std::string_view key) const;
  // One line about the connection; `retry` adds when the next attempt comes.
  void Log(LogLevel level, std::string_view what, std::string_view why, bool retry);

  asio::io_context& io_;
  const RedisStoreSettings settings_;
  RedisStoreStats& stats_;
  asio::steady_timer reconnect_timer_;
  // One timer for every deadline of the current link: its connect, then the oldest
  // command in flight (replies come in order, so no younger command can be late first).
  asio::steady_timer watchdog_;
  uint64_t watchdog_generation_ = 0;  // a newer arming supersedes a queued expiry
  bool watchdog_armed_ = false;
  SteadyClock::time_point watchdog_deadline_{};
  SteadyClock::time_point connect_deadline_{};
  std::shared_ptr<Link> link_;  // the connection, or null between attempts
  proto::Duration backoff_;     // the delay before the next reconnect
  bool started_ = false;
  bool reconnect_scheduled_ = false;
  bool shut_down_ = false;
  // How the commands that get a null reply from hiredis count: kDisconnected when the
  // connection broke, kTimeout while Teardown() closes a stuck one. Not counted at all
  // once shut down (destruction is not a failure).
  RedisFailure null_reply_reason_ = RedisFailure::kDisconnected;
  // Why the link is closing when the store closes it (hiredis's errstr is empty then).
  std::string teardown_why_;
  std::deque<Completion> ready_;
  bool drain_posted_ = false;
};

absl::Status RedisDialogStore::Impl::Start() {
  if (!IsIpLiteral(settings_.host))
    return absl::InvalidArgumentError("redis host must be an IP address, not \"" + settings_.host +
                                      "\"");
  if (settings_.port == 0) return absl::InvalidArgumentError("redis port must not be 0");
  if (settings_.command_timeout <= proto::Duration::zero() ||
      settings_.connect_timeout <= proto::Duration::zero())
    return absl::InvalidArgumentError("redis timeouts must be positive");
  if (settings_.reconnect_min <= proto::Duration::zero() ||
      settings_.reconnect_max < settings_.reconnect_min)
    return absl::InvalidArgumentError("redis reconnect backoff must be 0 < min <= max");
  if (started_ || shut_down_) return absl::OkStatus();
  started_ = true;
  Connect();
  return absl::OkStatus();
}

void RedisDialogStore::Impl::Shutdown() {
  if (shut_down_) return;
  shut_down_ = true;
  reconnect_timer_.cancel();
  watchdog_.cancel();
  if (std::shared_ptr<Link> link = link_; link != nullptr && link->context != nullptr) {
    // Runs every reply callback with a null reply (OnReply drops them: shut_down_), then
    // the cleanup hook, which releases the descriptor before hiredis closes the fd.
    redisAsyncFree(link->context);
  }
  link_.reset();
  SetConnected(false);
  // Drops, without running, every outcome not delivered yet, inside the destructor as the
  // header promises.
  ready_.clear();
}

void RedisDialogStore::Impl::Connect() {
  reconnect_scheduled_ = false;
  redisAsyncContext* context = redisAsyncConnect(settings_.host.c_str(), settings_.port);
  if (context == nullptr || context->err != 0) {
    // Failed before any I/O (no memory, no socket, or refused at once on loopback): no
    // hook is installed yet, so freeing it here is all there is to do.
    Log(LogLevel::kWarning, "cannot connect",
        context == nullptr ? "out of memory" : context->errstr,
        /*retry=*/true);
    if (context != nullptr) redisAsyncFree(context);
    ScheduleReconnect();
    return;
  }
  auto link = std::make_shared<Link>(this, io_);
  boost::system::error_code ec;
  link->descriptor.assign(context->c.fd, ec);
  if (ec) {
    Log(LogLevel::kWarning, "cannot watch the socket", ec.message(), /*retry=*/true);
    redisAsyncFree(context);
    ScheduleReconnect();
    return;
  }
  link->context = context;
  context->data = link.get();
  context->ev.data = link.get();
  context->ev.addRead = &Impl::OnAddRead;
  context->ev.delRead = &Impl::OnDelRead;
  context->ev.addWrite = &Impl::OnAddWrite;
  context->ev.delWrite = &Impl::OnDelWrite;
  context->ev.cleanup = &Impl::OnCleanup;
  EnableKeepAlive(context->c.fd);
  link_ = link;
  // hiredis learns that connect() finished from the first write event: this arms it.
  redisAsyncSetConnectCallback(context, &Impl::OnConnectCallback);
  connect_deadline_ = SteadyClock::now() + settings_.connect_timeout;
  ArmWatchdog(connect_deadline_);
}

void RedisDialogStore::Impl::ScheduleReconnect() {
  if (shut_down_ || reconnect_scheduled_) return;
  reconnect_scheduled_ = true;
  const proto::Duration delay = backoff_;
  backoff_ = std::min(backoff_ * 2, settings_.reconnect_max);
  reconnect_timer_.expires_after(delay);
  reconnect_timer_.async_wait([weak = weak_from_this()](const boost::system::error_code& ec) {
    if (ec) return;
    std::shared_ptr<Impl> self = weak.lock();
    if (self == nullptr || self->shut_down_ || !self->reconnect_scheduled_) return;
    Bump(self->stats_.reconnects);
    self->Connect();
  });
}

void RedisDialogStore::Impl::OnAddRead(void* data) {
  Link& link = *static_cast<Link*>(data);
  link.want_read = true;
  link.impl->ArmRead(link);
}

void RedisDialogStore::Impl::OnDelRead(void* data) { static_cast<Link*>(data)->want_read = false; }

void RedisDialogStore::Impl::OnAddWrite(void* data) {
  Link& link = *static_cast<Link*>(data);
  link.want_write = true;
  // The connect completes on the first write event; once connected, commands wait for
  // the batch window unless an adoption asks for them now (FlushNow()).
  if (link.connected && link.impl->settings_.write_batch_window > proto::Duration::zero())
    link.impl->ArmBatch(link);
  else
    link.impl->ArmWrite(link);
}

void RedisDialogStore::Impl::ArmBatch(Link& link) {
  if (link.batch_armed || link.write_armed || link.gone) return;
  link.batch_armed = true;
  link.batch.expires_after(settings_.write_batch_window);
  link.batch.async_wait([weak = weak_from_this(),
                         keep = link.shared_from_this()](const boost::system::error_code& ec) {
    keep->batch_armed = false;
    if (ec == asio::error::operation_aborted || keep->gone) return;
    std::shared_ptr<Impl> self = weak.lock();
    if (self == nullptr || self->shut_down_) return;
    self->ArmWrite(*keep);
  });
}

void RedisDialogStore::Impl::FlushNow(Link& link) {
  if (link.batch_armed) link.batch.cancel();  // its handler finds write_armed and stops
  ArmWrite(link);
}

void RedisDialogStore::Impl::OnDelWrite(void* data) {
  static_cast<Link*>(data)->want_write = false;
}

void RedisDialogStore::Impl::OnCleanup(void* data) {
  Link& link = *static_cast<Link*>(data);
  link.impl->OnLinkGone(link);
}

void RedisDialogStore::Impl::OnConnectCallback(const redisAsyncContext* context, int status) {
  Link& link = *static_cast<Link*>(context->data);
  link.impl->OnConnected(link, status == REDIS_OK);
}

void RedisDialogStore::Impl::OnReplyCallback(redisAsyncContext* context, void* reply,
                                             void* privdata) {
  Link& link = *static_cast<Link*>(privdata);
  link.impl->OnReply(link, static_cast<const redisReply*>(reply));
}

// Asio's epoll reactor registers the fd edge-triggered, but a wait started on an empty
// queue re-arms it (EPOLL_CTL_MOD), which reports readiness that is already there: bytes
// hiredis left unread (it reads 16 KiB per call) still wake the next wait.
void RedisDialogStore::Impl::ArmRead(Link& link) {
  if (!link.want_read || link.read_armed || link.gone) return;
  link.read_armed = true;
  link.descriptor.async_wait(
      asio::posix::stream_descriptor::wait_read,
      [weak = weak_from_this(),
       keep = link.shared_from_this()](const boost::system::error_code& ec) {
        keep->read_armed = false;
        // Any other error: let hiredis read, it finds out what is wrong with the socket.
        if (ec == asio::error::operation_aborted || keep->gone || !keep->want_read) return;
        std::shared_ptr<Impl> self = weak.lock();
        if (self == nullptr || self->shut_down_) return;
        // May free the context (EOF, reset, protocol error): `keep` holds the Link.
        redisAsyncHandleRead(keep->context);
      });
}

void RedisDialogStore::Impl::ArmWrite(Link& link) {
  if (!link.want_write || link.write_armed || link.gone) return;
  link.write_armed = true;
  link.descriptor.async_wait(
      asio::posix::stream_descriptor::wait_write,
      [weak = weak_from_this(),
       keep = link.shared_from_this()](const boost::system::error_code& ec) {
        keep->write_armed = false;
        if (ec == asio::error::operation_aborted || keep->gone || !keep->want_write) return;
        std::shared_ptr<Impl> self = weak.lock();
        if (self == nullptr || self->shut_down_) return;
        // The first write event completes the connect (OnConnected); later ones flush the
        // commands buffered since, all of them in one write.
        redisAsyncHandleWrite(keep->context);
      });
}

void RedisDialogStore::Impl::OnConnected(Link& link, bool ok) {
  // On failure hiredis frees the context right after this returns; OnLinkGone, from its
  // cleanup hook, schedules the retry.
  if (!ok || shut_down_) return;
  link.connected = true;
  SetConnected(true);
  Log(LogLevel::kInfo, "connected", {}, /*retry=*/false);
}

void RedisDialogStore::Impl::OnLinkGone(Link& link) {
  if (link.gone) return;
  std::shared_ptr<Link> keep = link.shared_from_this();
  // hiredis's reason (connect refused, EOF, reset) is in the context until it is freed,
  // right after this hook; when the store closes the link itself, Teardown() said why.
  std::string why = std::move(teardown_why_);
  teardown_why_.clear();
  if (link.context != nullptr && link.context->err != 0 && link.context->errstr != nullptr)
    why = link.context->errstr;
  link.gone = true;
  link.want_read = false;
  link.want_write = false;
  link.batch.cancel();
  // release(), not close(): hiredis closes the fd itself, right after this hook. Pending
  // waits end with operation_aborted and see `gone`.
  link.descriptor.release();
  link.context = nullptr;
  const bool was_connected = link.connected;
  link.connected = false;
  if (link_ == keep) {
    link_.reset();
    SetConnected(false);
  }
  if (shut_down_) return;
  Log(LogLevel::kWarning, was_connected ? "connection lost" : "cannot connect", why,
      /*retry=*/true);
  ScheduleReconnect();
}

void RedisDialogStore::Impl::Teardown(RedisFailure reason, std::string why) {
  std::shared_ptr<Link> link = link_;
  if (link == nullptr || link->context == nullptr) return;
  teardown_why_ = std::move(why);
  null_reply_reason_ = reason;
  // Not from inside a hiredis callback (only the watchdog calls this), so hiredis frees at
  // once: null replies for every command in flight, then the cleanup hook (OnLinkGone).
  redisAsyncFree(link->context);
  null_reply_reason_ = RedisFailure::kDisconnected;
}

void RedisDialogStore::Impl::ArmWatchdog(SteadyClock::time_point deadline) {
  if (watchdog_armed_ && watchdog_deadline_ <= deadline) return;
  watchdog_armed_ = true;
  watchdog_deadline_ = deadline;
  watchdog_.expires_at(deadline);
  watchdog_.async_wait([weak = weak_from_this(),
                        generation = ++watchdog_generation_](const boost::system::error_code& ec) {
    if (ec) return;
    std::shared_ptr<Impl> self = weak.lock();
    if (self == nullptr || self->shut_down_ || generation != self->watchdog_generation_) return;
    self->OnWatchdog();
  });
}

void RedisDialogStore::Impl::OnWatchdog() {
  watchdog_armed_ = false;
  if (link_ == nullptr) return;
  const SteadyClock::time_point now = SteadyClock::now();
  if (!link_->connected) {
    if (now >= connect_deadline_) {
      Teardown(RedisFailure::kDisconnected,
               proto::StrCat("connect timed out after ", Ms(settings_.connect_timeout), " ms"));
    } else {
      ArmWatchdog(connect_deadline_);
    }
    return;
  }
  if (link_->pending.empty()) return;
  const SteadyClock::time_point deadline =
      link_->pending.front().sent_at + settings_.command_timeout;
  if (now >= deadline) {
    // Replies come in order: the oldest command unanswered means every one behind it is
    // stuck too. A Redis that is stopped, swapping or partitioned keeps the TCP
    // connection open, so only a new one can tell when it is back.
    Teardown(RedisFailure::kTimeout,
             proto::StrCat("no reply within ", Ms(settings_.command_timeout), " ms"));
  } else {
    ArmWatchdog(deadline);
  }
}

bool RedisDialogStore::Impl::Send(CommandKind kind, std::initializer_list<std::string_view> args,
                                  std::unique_ptr<AdoptRequest>* adopt) {
  constexpr size_t kMaxArgs = 8;
  const char* argv[kMaxArgs];
  size_t lengths[kMaxArgs];
  size_t argc = 0;
  for (std::string_view arg : args) {
    if (argc == kMaxArgs) return false;
    argv[argc] = arg.data();
    lengths[argc] = arg.size();
    ++argc;
  }
  Link& link = *link_;
  // hiredis copies the arguments into its output buffer; the write event sends it, with
  // whatever else was buffered by then.
  if (redisAsyncCommandArgv(link.context, &Impl::OnReplyCallback, &link, static_cast<int>(argc),
                            argv, lengths) != REDIS_OK)
    return false;
  const SteadyClock::time_point now = SteadyClock::now();
  const bool was_idle = link.pending.empty();
  link.pending.push_back(Pending{kind, now, adopt != nullptr ? std::move(*adopt) : nullptr});
  if (was_idle) ArmWatchdog(now + settings_.command_timeout);
  return true;
}

std::string RedisDialogStore::Impl::FullKey(std::string_view key) const {
  std::string full;
  full.reserve(settings_.key_prefix.size() + key.size());
  full.append(settings_.key_prefix);
  full.append(key);
  return full;
}

void RedisDialogStore::Impl::Save(const DialogRecord& record, proto::Duration ttl) {
  Bump(stats_.saves);
  if (!connected()) return Fail(RedisFailure::kDisconnected);
  if (record.key.empty()) return Fail(RedisFailure::kError);
  const std::string key = FullKey(record.key);
  const std::string data = EncodeDialogRecord(record);
  char ttl_buffer[24];
  if (!Send(CommandKind::kSave,
            {"EVAL", kSaveScript, "1", key, record.owner, data, TtlMs(ttl, ttl_buffer)}))
    Fail(RedisFailure::kError);
}

void RedisDialogStore::Impl::Remove(std::string_view key) {
  Bump(stats_.removes);
  if (!connected()) return Fail(RedisFailure::kDisconnected);
  if (!Send(CommandKind::kRemove, {"DEL", FullKey(key)})) Fail(RedisFailure::kError);
}

void RedisDialogStore::Impl::Adopt(std::string_view key, std::string_view self, proto::Duration ttl,
                                   AdoptDone done) {
  Bump(stats_.adoptions_tried);
  if (!connected()) {
    Fail(RedisFailure::kDisconnected);
    return Complete(std::move(done), AdoptOutcome::kUnavailable, std::nullopt);
  }
  auto request = std::make_unique<AdoptRequest>(
      AdoptRequest{std::string(key), std::string(self), std::move(done)});
  const std::string full_key = FullKey(key);
  char ttl_buffer[24];
  if (!Send(CommandKind::kAdopt,
            {"EVAL", kAdoptScript, "1", full_key, self, OwnerOfKey(key), TtlMs(ttl, ttl_buffer)},
            &request)) {
    Fail(RedisFailure::kError);
    Complete(std::move(request->done), AdoptOutcome::kUnavailable, std::nullopt);
    return;
  }
  // A request waits for this answer: no batch window.
  if (link_ != nullptr) FlushNow(*link_);
}

void RedisDialogStore::Impl::OnReply(Link& link, const redisReply* reply) {
  if (link.pending.empty()) return;  // hiredis calls back once per command sent
  Pending pending = std::move(link.pending.front());
  link.pending.pop_front();
  if (shut_down_) return;
  if (reply == nullptr) {
    // The connection went away first (or Teardown() closed it): one failure per command.
    Fail(null_reply_reason_);
    if (pending.adopt != nullptr)
      Complete(std::move(pending.adopt->done), AdoptOutcome::kUnavailable, std::nullopt);
    return;
  }
  const SteadyClock::time_point now = SteadyClock::now();
  ObserveRoundTrip(now - pending.sent_at);
  if (!link.answered) {
    // This connection has proved itself: the next failure starts the backoff over.
    link.answered = true;
    backoff_ = settings_.reconnect_min;
  }
  // The watchdog was armed for the oldest command; when it fires it looks at the new
  // oldest, so answering here costs no timer operation.
  if (pending.adopt != nullptr) return OnAdoptReply(*pending.adopt, *reply);
  if (reply->type == REDIS_REPLY_ERROR) Fail(RedisFailure::kError);
}

void RedisDialogStore::Impl::OnAdoptReply(AdoptRequest& request, const redisReply& reply) {
  AdoptDone done = std::move(request.done);
  if (reply.type == REDIS_REPLY_NIL)
    return Complete(std::move(done), AdoptOutcome::kNotFound, std::nullopt);
  if (reply.type == REDIS_REPLY_ARRAY && reply.elements == 2 &&
      reply.element[0]->type == REDIS_REPLY_INTEGER) {
    if (reply.element[0]->integer == 0)
      return Complete(std::move(done), AdoptOutcome::kOwnedByOther, std::nullopt);
    const redisReply& data = *reply.element[1];
    if (reply.element[0]->integer == 1 && data.type == REDIS_REPLY_STRING) {
      std::optional<DialogRecord> record = DecodeDialogRecord(std::string_view(data.str, data.len));
      if (record.has_value() && record->key == request.key) {
        record->owner = std::move(request.self);
        return Complete(std::move(done), AdoptOutcome::kAdopted, std::move(record));
      }
      // Bytes another version wrote, or not ours at all: the call cannot be taken over.
      Fail(RedisFailure::kError);
      return Complete(std::move(done), AdoptOutcome::kNotFound, std::nullopt);
    }
  }
  // An error reply (OOM, scripting disabled, a key of the wrong type) or a shape the
  // script never returns.
  Fail(RedisFailure::kError);
  Complete(std::move(done), AdoptOutcome::kUnavailable, std::nullopt);
}

void RedisDialogStore::Impl::Complete(AdoptDone done, AdoptOutcome outcome,
                                      std::optional<DialogRecord> record) {
  if (outcome == AdoptOutcome::kAdopted) Bump(stats_.adopted);
  ready_.push_back(Completion{std::move(done), outcome, std::move(record)});
  if (drain_posted_) return;
  drain_posted_ = true;
  // Never inline: not inside Adopt() (the caller is not ready for it), and not inside a
  // hiredis callback (a `done` that destroyed the store there would free the context
  // under hiredis's feet).
  asio::post(io_, [weak = weak_from_this()] {
    std::shared_ptr<Impl> self = weak.lock();
    if (self == nullptr || self->shut_down_) return;
    self->DrainCompletions();
  });
}

void RedisDialogStore::Impl::DrainCompletions() {
  drain_posted_ = false;
  // Only what was ready before this turn: a `done` that adopts again while disconnected
  // queues its outcome for the next turn instead of looping here.
  for (size_t count = ready_.size(); count > 0 && !shut_down_ && !ready_.empty(); --count) {
    Completion completion = std::move(ready_.front());
    ready_.pop_front();
    // May destroy the store: shut_down_ is then set, and the caller's lock keeps *this.
    if (completion.done) completion.done(completion.outcome, std::move(completion.record));
  }
}

void RedisDialogStore::Impl::SetConnected(bool connected) {
  stats_.connected.store(connected ? 1 : 0, std::memory_order_relaxed);
}

void RedisDialogStore::Impl::ObserveRoundTrip(SteadyClock::duration elapsed) {
  const uint64_t us = static_cast<uint64_t>(
      std::max<int64_t>(0, std::chrono::duration_cast<std::chrono::microseconds>(elapsed).count()));
  size_t bucket = 0;
  while (bucket < RedisStoreStats::kRoundTripBoundsUs.size() &&
         us > RedisStoreStats::kRoundTripBoundsUs[bucket])
    ++bucket;
  Bump(stats_.round_trip_buckets[bucket]);
  Bump(stats_.round_trip_sum_us, us);
}

void RedisDialogStore::Impl::Log(LogLevel level, std::string_view what, std::string_view why,
                                 bool retry) {
  if (!LogEnabled(level)) return;
  uint64_t suppressed = 0;
  if (!connection_log_limit.Allow(&suppressed)) return;
  std::string line = proto::StrCat("redis ", settings_.host, ":", settings_.port, ": ", what);
  if (!why.empty()) proto::StrAppend(&line, " (", why, ")");
  // Called just before ScheduleReconnect(), which waits backoff_.
  if (retry) proto::StrAppend(&line, "; retrying in ", Ms(backoff_), " ms");
  WriteLogLine(level, line, suppressed);
}

RedisDialogStore::RedisDialogStore(boost::asio::io_context& io, RedisStoreSettings settings,
                                   RedisStoreStats* stats)
    : impl_(std::make_shared<Impl>(io, std::move(settings), stats)) {}

RedisDialogStore::~RedisDialogStore() {
  // Other owners are only handlers running right now (a `done` destroying the store);
  // they see shut_down_ and stop.
  impl_->Shutdown();
}

absl::Status RedisDialogStore::Start() { return impl_->Start(); }

void RedisDialogStore::Save(const DialogRecord& record, proto::Duration ttl) {
  impl_->Save(record, ttl);
}

void RedisDialogStore::Remove(std::string_view key) { impl_->Remove(key); }

void RedisDialogStore::Adopt(std::string_view key, std::string_view self, proto::Duration ttl,
                             std::function<void(AdoptOutcome, std::optional<DialogRecord>)> done) {
  impl_->Adopt(key, self, ttl, std::move(done));
}

bool RedisDialogStore::connected() const { return impl_->connected(); }

}  // namespace b2bua
