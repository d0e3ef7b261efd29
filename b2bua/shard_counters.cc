#include "b2bua/shard_counters.h"

namespace b2bua {

// The names below are Prometheus label values: dashboards and alerts match on them, so
// they are part of the external interface. Rename one only with a release note.
// Every switch lists all enumerators without a default so that -Wswitch flags a new
// enumerator that has no name yet; the trailing return covers kCount and casts.

std::string_view CallOutcomeName(CallOutcome outcome) {
  switch (outcome) {
    case CallOutcome::kAnswered: return "answered";
    case CallOutcome::kRejected: return "rejected";
    case CallOutcome::kCancelled: return "cancelled";
    case CallOutcome::kNoAnswer: return "no_answer";
    case CallOutcome::kNoRoute: return "no_route";
    case CallOutcome::kUnreachable: return "unreachable";
    case CallOutcome::kOverload: return "overload";
    case CallOutcome::kRedirectFailed: return "redirect_failed";
    case CallOutcome::kRedirectSent: return "redirect_sent";
    case CallOutcome::kCount: break;
  }
  return "other";
}

RedirectCode ToRedirectCode(int status) {
  switch (status) {
    case 300: return RedirectCode::k300;
    case 301: return RedirectCode::k301;
    case 302: return RedirectCode::k302;
    case 305: return RedirectCode::k305;
    case 380: return RedirectCode::k380;
    default: return RedirectCode::kOther;
  }
}

std::string_view RedirectCodeName(RedirectCode code) {
  switch (code) {
    case RedirectCode::k300: return "300";
    case RedirectCode::k301: return "301";
    case RedirectCode::k302: return "302";
    case RedirectCode::k305: return "305";
    case RedirectCode::k380: return "380";
    case RedirectCode::kOther: return "other";
    case RedirectCode::kCount: break;
  }
  return "other";
}

std::string_view TargetOutcomeName(TargetOutcome outcome) {
  switch (outcome) {
    case TargetOutcome::kAnswered: return "answered";
    case TargetOutcome::kFailed: return "failed";
    case TargetOutcome::kTimeout: return "timeout";
    case TargetOutcome::kRefusedByPolicy: return "refused_by_policy";
    case TargetOutcome::kSkippedAsLoop: return "skipped_as_loop";
    case TargetOutcome::kRedirected: return "redirected";
    case TargetOutcome::kCancelled: return "cancelled";
    case TargetOutcome::kCount: break;
  }
  return "other";
}

std::string_view RedirectFailureName(RedirectFailure reason) {
  switch (reason) {
    case RedirectFailure::kExhausted: return "exhausted";
    case RedirectFailure::kDepth: return "depth";
    case RedirectFailure::kLoop: return "loop";
    case RedirectFailure::kCancelled: return "cancelled";
    case RedirectFailure::kAllRefused: return "all_refused";
    case RedirectFailure::kCount: break;
  }
  return "other";
}

std::string_view StoreFailureName(StoreFailure reason) {
  switch (reason) {
    case StoreFailure::kDisconnected: return "disconnected";
    case StoreFailure::kTimeout: return "timeout";
    case StoreFailure::kError: return "error";
    case StoreFailure::kCount: break;
  }
  return "unknown";
}

std::string_view AdoptFailureName(AdoptFailure reason) {
  switch (reason) {
    case AdoptFailure::kNotFound: return "not_found";
    case AdoptFailure::kOwnedByOther: return "owned_by_other";
    case AdoptFailure::kUnavailable: return "unavailable";
    case AdoptFailure::kOverload: return "overload";
    case AdoptFailure::kCount: break;
  }
  return "unknown";
}

std::string_view HandshakeFailureName(HandshakeFailure reason) {
  switch (reason) {
    case HandshakeFailure::kTimeout: return "timeout";
    case HandshakeFailure::kVerify: return "verify";
    case HandshakeFailure::kError: return "error";
    case HandshakeFailure::kCount: break;
  }
  return "other";
}

std::string_view ConnectionCloseName(ConnectionClose reason) {
  switch (reason) {
    case ConnectionClose::kIdle: return "idle";
    case ConnectionClose::kFirstByteTimeout: return "first_byte_timeout";
    case ConnectionClose::kMessageTimeout: return "message_timeout";
    case ConnectionClose::kFramingError: return "framing_error";
    case ConnectionClose::kWriteOverflow: return "write_overflow";
    case ConnectionClose::kCount: break;
  }
  return "other";
}

std::string_view RejectReasonName(RejectReason reason) {
  switch (reason) {
    case RejectReason::kUntrusted: return "untrusted";
    case RejectReason::kRelayDenied: return "relay_denied";
    case RejectReason::kScanner: return "scanner";
    case RejectReason::kFlood: return "flood";
    case RejectReason::kCallsPerSource: return "calls_per_source";
    case RejectReason::kRouteLimit: return "route_limit";
    case RejectReason::kRate: return "rate";
    case RejectReason::kCount: break;
  }
  return "other";
}

std::string_view DropReasonName(DropReason reason) {
  switch (reason) {
    case DropReason::kOversized: return "oversized";
    case DropReason::kUnparsable: return "unparsable";
    case DropReason::kBadResponse: return "bad_response";
    case DropReason::kQueueFull: return "queue_full";
    case DropReason::kSendFailed: return "send_failed";
    case DropReason::kCount: break;
  }
  return "other";
}

}  // namespace b2bua
