#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "proto/clock.h"
#include "proto/sip_message.h"
#include "proto/timer_wheel.h"
#include "proto/transport.h"

namespace b2bua::proto {

/// RFC 3261 17.1.1.1 / 17.1.2.2 timer base values; every other timer derives from them.
struct TransactionConfig {
  Duration t1 = std::chrono::milliseconds(500);
  Duration t2 = std::chrono::seconds(4);
  Duration t4 = std::chrono::seconds(5);
  /// Send "100 Trying" as soon as an INVITE server transaction is created (17.2.1).
  bool send_100_trying = true;
};

/// Names a transaction in the layer. Stale ids (the transaction ended) are detected by
/// their generation and ignored by every call; 0 names no transaction.
using TransactionId = uint64_t;
constexpr TransactionId kNoTransaction = 0;

/// Why a client transaction ended without a final response.
enum class ClientFailure : uint8_t {
  kTimeout,         // Timer B or F, or no final response 64*T1 after our CANCEL (9.1)
  kTransportError,  // the sink refused the request
};

/// Counters the layer bumps; the shard publishes them to the metrics exporter.
struct TransactionCounters {
  uint64_t server_created = 0;
  uint64_t client_created = 0;
  uint64_t retransmissions_sent = 0;      // requests and responses we re-sent
  uint64_t retransmissions_absorbed = 0;  // duplicates received and answered from state
  uint64_t timeouts = 0;                  // Timer B, F and H expiries
  uint64_t stray_responses = 0;           // responses matching no client transaction
  uint64_t cancels_unmatched = 0;         // CANCEL answered 481
};

/// The transaction user: the B2BUA core. Every callback runs on the owning shard, inside
/// TransactionLayer::OnMessage or TimerWheel::Advance; the SipMessage views are valid only
/// during the call.
class TransactionUser {
 public:
  virtual ~TransactionUser() = default;

  /// A request that is not a retransmission and not an ACK created server transaction
  /// `id` (CANCEL matching an INVITE transaction is not reported here, see OnCancel).
  /// For INVITE, 100 Trying was already sent when configured. The TU answers with
  /// TransactionLayer::Respond, now or later.
  virtual void OnRequest(TransactionId id, const SipMessage& request, const Peer& source) = 0;

  /// An ACK that matched no INVITE server transaction in the Completed state: the ACK for
  /// a 2xx (end to end, owned by the core), or a stray one.
  virtual void OnAck(const SipMessage& ack, const Peer& source) = 0;

  /// A CANCEL matched INVITE server transaction `invite` that has not sent a final
  /// response. The layer has already answered the CANCEL with 200; the TU should end the
  /// INVITE with 487 (RFC 3261 9.2).
  virtual void OnCancel(TransactionId invite, const SipMessage& cancel) = 0;

  /// A response for client transaction `id` (`cookie` is what SendRequest got).
  /// Retransmitted non-2xx finals are absorbed (and re-ACKed for INVITE by the layer);
  /// every 2xx to an INVITE is reported, retransmissions included, because the core owns
  /// the ACK for 2xx (RFC 6026 Accepted state).
  virtual void OnResponse(TransactionId id, uint64_t cookie, const SipMessage& response) = 0;

  /// A response that matched no client transaction (e.g. a 2xx retransmitted after the
  /// Accepted state ended). The core may ACK a 2xx it recognises.
  virtual void OnStrayResponse(const SipMessage& response, const Peer& source) = 0;

  /// Client transaction `id` ended without a final response.
  virtual void OnClientFailure(TransactionId id, uint64_t cookie, ClientFailure failure) = 0;
};

/// RFC 3261 section 17 for one shard: INVITE and non-INVITE, client and server, every
/// timer (A B C(no: the core's) D E F G H I J K, plus RFC 6026 L and M), matching per
/// 17.1.3 and 17.2.3 with the RFC 2543 fallback for branches without the z9hG4bK cookie.
/// Retransmissions only over unreliable transports. Owns copies of the bytes it may need
/// to retransmit; never throws.
class TransactionLayer {
 public:
  TransactionLayer(const TransactionConfig& config, TimerWheel& timers, MessageSink& sink,
                   TransactionUser& user);
  ~TransactionLayer();

  TransactionLayer(const TransactionLayer&) = delete;
  TransactionLayer& operator=(const TransactionLayer&) = delete;

  /// Owning shard only. Feeds a parsed message that passed ValidateRequest or
  /// ValidateResponse. Requests: absorbs retransmissions (re-sending the last response),
  /// creates server transactions, matches ACK and CANCEL. Responses: matches the client
  /// transaction by top Via branch and CSeq method.
  void OnMessage(const SipMessage& message, const Peer& source);

  /// Owning shard only. Starts a client transaction for `request` (complete bytes whose
  /// top Via carries `branch`, which must be unique and start with z9hG4bK). ACK is not a
  /// transaction: send it through the sink. Returns kNoTransaction when the send failed
  /// at once (then no callback follows).
  TransactionId SendRequest(std::string request, std::string_view branch, Method method,
                            const Peer& destination, uint64_t cookie);

  /// Owning shard only. Cancels client INVITE `invite` with `cancel` (complete CANCEL
  /// bytes, same branch as the INVITE): sent at once if a provisional response arrived,
  /// held until one arrives otherwise (RFC 3261 9.1), dropped if a final response
  /// already arrived. The CANCEL's own responses are absorbed by the layer. Only the
  /// first call per INVITE counts. Once the CANCEL is sent, an INVITE still without a
  /// final response 64*T1 later ends with OnClientFailure(kTimeout) (RFC 3261 9.1).
  void SendCancel(TransactionId invite, std::string cancel);
  /// Owning shard only. SendCancel with the CANCEL built from the stored INVITE (RFC 3261
  /// 9.1: its Request-URI, top Via, Route, From, To, Call-ID and CSeq number). Does nothing
  /// for a stale id or an INVITE that already has its final response. `extra_headers`
  /// (complete lines, e.g. an RFC 3326 Reason) are added to the CANCEL.
  void CancelInvite(TransactionId invite, std::string_view extra_headers = {});

  /// Owning shard only. The transport could not deliver to `to` (a stream connection
  /// failed to open or to hand over a TLS handshake): client transactions to it that have
  /// not heard a response end at once with OnClientFailure(kTransportError), instead of
  /// waiting out Timer B or F.
  void OnTransportFailure(const Peer& to);

  /// Owning shard only. Sends a response on server transaction `id` (complete bytes).
  /// Returns false when `id` is stale, names a client transaction, already sent a final
  /// response, or `status_code` is outside 100..699; nothing is sent then.
  /// The destination follows RFC 3261 18.2.2 / RFC 3581 from the request's source.
  /// A 2xx to an INVITE is sent once: its retransmissions are the core's, through the
  /// sink (RFC 6026). A send the sink refuses still moves the state; the transport
  /// counts the failure.
  bool Respond(TransactionId id, int status_code, std::string response);

  /// Owning shard only. The source the server transaction's request came from, with the
  /// response destination rules applied (the address responses go to). nullptr for a
  /// stale or client id. The pointer is valid until the next call into the layer.
  const Peer* ResponseDestination(TransactionId id) const;

  /// Live transactions (client + server).
  size_t size() const;
  const TransactionCounters& counters() const { return counters_; }
  const TransactionConfig& config() const { return config_; }

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
  const TransactionConfig config_;
  TransactionCounters counters_;
};

}  // namespace b2bua::proto
