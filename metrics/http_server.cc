#include "metrics/http_server.h"

#include <pthread.h>

#include <atomic>
#include <cstdio>
#include <exception>
#include <set>
#include <string_view>
#include <thread>
#include <tuple>
#include <utility>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/field.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/status.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/verb.hpp>
#include <boost/beast/http/write.hpp>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace b2bua::metrics {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using boost::system::error_code;

// EOF, cancellation and timeouts are ordinary events here, so every I/O returns its error
// as a value instead of throwing.
constexpr auto kUseTuple = asio::as_tuple(asio::use_awaitable);

constexpr std::string_view kMetricsContentType = "text/plain; version=0.0.4; charset=utf-8";
constexpr std::string_view kTextContentType = "text/plain; charset=utf-8";
constexpr std::string_view kServerName = "b2bua-metrics";

// Back-off after a failed accept (EMFILE, ENOBUFS): retrying at once would spin the thread
// while the condition lasts.
constexpr std::chrono::milliseconds kAcceptRetryDelay{100};

using Request = http::request<http::string_body>;
using Response = http::response<http::string_body>;

bool IsHttpParseError(const error_code& ec) {
  return ec.category() == make_error_code(http::error::bad_version).category();
}

// Splits "IP:PORT" or "[IPv6]:PORT".
absl::StatusOr<tcp::endpoint> ParseListen(const std::string& listen) {
  const size_t colon = listen.rfind(':');
  if (colon == std::string::npos || colon == 0)
    return absl::InvalidArgumentError(absl::StrCat("listen address \"", listen, "\" is not IP:PORT"));
  std::string host = listen.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  uint32_t port = 0;
  if (!absl::SimpleAtoi(listen.substr(colon + 1), &port) || port > 65535)
    return absl::InvalidArgumentError(absl::StrCat("listen address \"", listen, "\" has a bad port"));
  error_code ec;
  const asio::ip::address address = asio::ip::make_address(host, ec);
  if (ec)
    return absl::InvalidArgumentError(
        absl::StrCat("listen address \"", listen, "\" has a bad IP: ", ec.message()));
  return tcp::endpoint(address, static_cast<uint16_t>(port));
}

}  // namespace

struct MetricsHttpServer::Impl {
  Impl(std::function<std::string()> render, std::function<bool()> is_ready, const Options& opts)
      : render_metrics(std::move(render)), ready(std::move(is_ready)), options(opts) {}

  absl::Status Listen(const tcp::endpoint& endpoint);
  void Run();
  void Shutdown();
  asio::awaitable<void> AcceptLoop();
  asio::awaitable<void> Serve(tcp::socket socket);
  asio::awaitable<void> WriteErrorAndClose(beast::tcp_stream& stream, http::status status);
  Response Handle(const Request& request) const;
  void OnException(std::exception_ptr error);

  // Declared first so that it is destroyed last: the acceptor and timer below use it.
  // One thread runs it, so nothing below needs a lock unless marked atomic.
  asio::io_context ioc{1};
  tcp::acceptor acceptor{ioc};
  asio::steady_timer accept_retry{ioc};
  const std::function<std::string()> render_metrics;
  const std::function<bool()> ready;
  const Options options;
  uint16_t port = 0;  // written before the thread starts, then read-only

  // Server thread only: the live connections, so Shutdown() can close them and Run()
  // returns once their coroutines have unwound.
  std::set<beast::tcp_stream*> sessions;
  bool stopping = false;  // server thread only

  std::atomic<uint64_t> internal_errors{0};
  std::thread thread;
  bool stopped = false;  // owner's thread only (Stop is not called concurrently)
};

absl::Status MetricsHttpServer::Impl::Listen(const tcp::endpoint& endpoint) {
  error_code ec;
  const std::string where = absl::StrCat(endpoint.address().to_string(), ":", endpoint.port());
  if (acceptor.open(endpoint.protocol(), ec); ec)
    return absl::UnavailableError(absl::StrCat("metrics listener ", where, ": open: ", ec.message()));
  // A restarted process must be able to bind again while old connections sit in TIME_WAIT.
  if (acceptor.set_option(asio::socket_base::reuse_address(true), ec); ec)
    return absl::UnavailableError(absl::StrCat("metrics listener ", where, ": SO_REUSEADDR: ", ec.message()));
  if (acceptor.bind(endpoint, ec); ec)
    return absl::UnavailableError(absl::StrCat("metrics listener ", where, ": bind: ", ec.message()));
  if (acceptor.listen(asio::socket_base::max_listen_connections, ec); ec)
    return absl::UnavailableError(absl::StrCat("metrics listener ", where, ": listen: ", ec.message()));
  const tcp::endpoint bound = acceptor.local_endpoint(ec);
  if (ec)
    return absl::UnavailableError(absl::StrCat("metrics listener ", where, ": getsockname: ", ec.message()));
  port = bound.port();
  return absl::OkStatus();
}

void MetricsHttpServer::Impl::Run() {
  // run() rethrows what a handler threw; the io_context stays usable, so count it and go
  // on serving rather than let the exception end the thread (and std::terminate the
  // process, since nothing above this frame catches).
  for (;;) {
    try {
      ioc.run();
      return;
    } catch (...) {
      OnException(std::current_exception());
    }
  }
}

void MetricsHttpServer::Impl::OnException(std::exception_ptr error) {
  internal_errors.fetch_add(1, std::memory_order_relaxed);
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    absl::FPrintF(stderr, "b2bua metrics http server: unexpected exception: %s\n", e.what());
  } catch (...) {
    absl::FPrintF(stderr, "b2bua metrics http server: unexpected non-standard exception\n");
  }
}

void MetricsHttpServer::Impl::Shutdown() {
  // Closing, rather than ioc.stop(), lets every pending operation complete with
  // operation_aborted, so each coroutine unwinds on this thread with the Impl intact and
  // run() returns by itself once no work is left.
  stopping = true;
  error_code ignored;
  acceptor.close(ignored);
  accept_retry.cancel();
  for (beast::tcp_stream* stream : sessions) stream->close();
}

asio::awaitable<void> MetricsHttpServer::Impl::AcceptLoop() {
  for (;;) {
    auto [ec, socket] = co_await acceptor.async_accept(kUseTuple);
    if (stopping || ec == asio::error::operation_aborted) co_return;
    if (ec) {
      accept_retry.expires_after(kAcceptRetryDelay);
      std::ignore = co_await accept_retry.async_wait(kUseTuple);
      if (stopping) co_return;
      continue;
    }
    if (sessions.size() >= options.max_connections) {
      error_code ignored;
      socket.close(ignored);
      continue;
    }
    asio::co_spawn(ioc, Serve(std::move(socket)), [this](std::exception_ptr error) {
      if (error) OnException(error);
    });
  }
}

asio::awaitable<void> MetricsHttpServer::Impl::Serve(tcp::socket socket) {
  beast::tcp_stream stream(std::move(socket));
  sessions.insert(&stream);
  struct Unregister {
    std::set<beast::tcp_stream*>& sessions;
    beast::tcp_stream* stream;
    ~Unregister() { sessions.erase(stream); }
  } unregister{sessions, &stream};

  // Room for one maximal request; the parser limits below fire first, and the cap keeps a
  // pipelining client from growing the buffer without bound.
  beast::flat_buffer buffer(2 * (kMaxHeaderBytes + kMaxBodyBytes));
  while (!stopping) {
    http::request_parser<http::string_body> parser;
    parser.header_limit(kMaxHeaderBytes);
    parser.body_limit(kMaxBodyBytes);

    stream.expires_after(options.idle_timeout);
    auto [read_error, read_bytes] = co_await http::async_read(stream, buffer, parser, kUseTuple);
    if (read_error == http::error::end_of_stream) {
      error_code ignored;
      stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
      co_return;
    }
    if (read_error) {
      // Answer what the client can act on; a timeout, reset or shutdown just closes.
      if (read_error == http::error::header_limit || read_error == http::error::buffer_overflow) {
        co_await WriteErrorAndClose(stream, http::status::request_header_fields_too_large);
      } else if (read_error == http::error::body_limit) {
        co_await WriteErrorAndClose(stream, http::status::payload_too_large);
      } else if (IsHttpParseError(read_error) && read_error != http::error::partial_message) {
        co_await WriteErrorAndClose(stream, http::status::bad_request);
      }
      co_return;
    }

    Response response = Handle(parser.get());
    const bool keep_alive = response.keep_alive();
    stream.expires_after(options.idle_timeout);
    auto [write_error, written] = co_await http::async_write(stream, response, kUseTuple);
    if (write_error) co_return;
    if (!keep_alive) {
      error_code ignored;
      stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
      co_return;
    }
  }
}

asio::awaitable<void> MetricsHttpServer::Impl::WriteErrorAndClose(beast::tcp_stream& stream,
                                                                  http::status status) {
  Response response(status, 11);
  response.set(http::field::server, kServerName);
  response.set(http::field::content_type, kTextContentType);
  response.keep_alive(false);
  response.body() = std::string(http::obsolete_reason(status));
  response.prepare_payload();
  stream.expires_after(options.idle_timeout);
  std::ignore = co_await http::async_write(stream, response, kUseTuple);
  error_code ignored;
  stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
}

Response MetricsHttpServer::Impl::Handle(const Request& request) const {
  Response response;
  response.version(request.version());
  response.keep_alive(request.keep_alive());
  response.set(http::field::server, kServerName);
  response.set(http::field::content_type, kTextContentType);

  std::string_view path(request.target().data(), request.target().size());
  if (const size_t query = path.find('?'); query != std::string_view::npos) path = path.substr(0, query);

  if (request.method() != http::verb::get) {
    response.result(http::status::method_not_allowed);
    response.set(http::field::allow, "GET");
    response.body() = "method not allowed";
  } else if (path == "/metrics") {
    response.result(http::status::ok);
    response.set(http::field::content_type, kMetricsContentType);
    response.body() = render_metrics();
  } else if (path == "/healthz") {
    response.result(http::status::ok);
    response.body() = "ok";
  } else if (path == "/readyz") {
    const bool is_ready = ready();
    response.result(is_ready ? http::status::ok : http::status::service_unavailable);
    response.body() = is_ready ? "ready" : "not ready";
  } else {
    response.result(http::status::not_found);
    response.body() = "not found";
  }
  response.prepare_payload();
  return response;
}

absl::StatusOr<std::unique_ptr<MetricsHttpServer>> MetricsHttpServer::Start(
    const std::string& listen, std::function<std::string()> render_metrics,
    std::function<bool()> ready) {
  return Start(listen, std::move(render_metrics), std::move(ready), Options{});
}

absl::StatusOr<std::unique_ptr<MetricsHttpServer>> MetricsHttpServer::Start(
    const std::string& listen, std::function<std::string()> render_metrics,
    std::function<bool()> ready, const Options& options) {
  if (!render_metrics || !ready) return absl::InvalidArgumentError("metrics server needs both callbacks");
  absl::StatusOr<tcp::endpoint> endpoint = ParseListen(listen);
  if (!endpoint.ok()) return endpoint.status();

  auto impl = std::make_unique<Impl>(std::move(render_metrics), std::move(ready), options);
  if (absl::Status status = impl->Listen(*endpoint); !status.ok()) return status;

  Impl* raw = impl.get();
  asio::co_spawn(raw->ioc, raw->AcceptLoop(), [raw](std::exception_ptr error) {
    if (error) raw->OnException(error);
  });
  raw->thread = std::thread([raw] { raw->Run(); });
  // Named so that top -H and gdb show which thread this is; failure is harmless.
  pthread_setname_np(raw->thread.native_handle(), "b2bua-metrics");
  return std::unique_ptr<MetricsHttpServer>(new MetricsHttpServer(std::move(impl)));
}

MetricsHttpServer::MetricsHttpServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

MetricsHttpServer::~MetricsHttpServer() { Stop(); }

uint16_t MetricsHttpServer::port() const { return impl_->port; }

uint64_t MetricsHttpServer::internal_errors() const {
  return impl_->internal_errors.load(std::memory_order_relaxed);
}

void MetricsHttpServer::Stop() {
  if (impl_->stopped) return;
  impl_->stopped = true;
  asio::post(impl_->ioc, [impl = impl_.get()] { impl->Shutdown(); });
  if (impl_->thread.joinable()) impl_->thread.join();
}

}  // namespace b2bua::metrics
