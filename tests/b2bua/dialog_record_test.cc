// Tests b2bua/dialog_record.{h,cc}: the cluster's dialog record as bytes, dialog keys and
// routing tokens. The store is shared, so what comes back from it is checked like input.

#include "b2bua/dialog_record.h"

#include <string>

#include "gtest/gtest.h"

namespace b2bua {
namespace {

DialogRecord Sample() {
  DialogRecord record;
  record.key = "1.5f.0.1a";
  record.owner = "1";
  record.caller.call_id = "a84b4c76e66710@pc33.atlanta.example.com";
  record.caller.local_party = "\"Bob\" <sip:bob@biloxi.example.com>;tag=a1";
  record.caller.remote_party = "\"Alice: 1\" <sip:alice@atlanta.example.com>;tag=1928301774";
  record.caller.remote_target = "sip:alice@192.0.2.4:5061;transport=tcp";
  record.caller.route_set = {"<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"};
  record.caller.local_cseq = 100;
  record.caller.remote_cseq = 314160;
  EXPECT_TRUE(proto::NetAddress::ParseIp("192.0.2.4", 5061, &record.caller.peer.address));
  record.caller.peer.transport = proto::TransportKind::kTcp;
  record.callee.call_id = "c0.1a@b2bua";
  record.callee.local_party = "<sip:alice@atlanta.example.com>;tag=f3";
  record.callee.remote_party = "<sip:bob@biloxi.example.com>;tag=b0b";
  record.callee.remote_target = "sip:bob@[2001:db8::7]:5070";
  record.callee.local_cseq = 3;
  EXPECT_TRUE(proto::NetAddress::ParseIp("2001:db8::7", 5070, &record.callee.peer.address));
  record.caller_invite_cseq = 314159;
  record.callee_invite_cseq = 2;
  record.ends_at_unix_ms = 1'800'000'360'000;
  record.started_at_unix_ms = 1'800'000'000'000;
  return record;
}

TEST(DialogRecordTest, RoundTrips) {
  const DialogRecord record = Sample();
  const std::string bytes = EncodeDialogRecord(record);
  std::optional<DialogRecord> back = DecodeDialogRecord(bytes);
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, record);
  EXPECT_EQ(DecodeDialogRecord(EncodeDialogRecord(DialogRecord{}))->key, "")
      << "empty fields survive too";
}

TEST(DialogRecordTest, EveryTruncationAndExtensionIsRefused) {
  const std::string bytes = EncodeDialogRecord(Sample());
  for (size_t n = 0; n < bytes.size(); ++n)
    EXPECT_FALSE(DecodeDialogRecord(bytes.substr(0, n))) << n;
  EXPECT_FALSE(DecodeDialogRecord(bytes + "0:"));
}

TEST(DialogRecordTest, ForeignOrDamagedBytesAreRefused) {
  std::string bytes = EncodeDialogRecord(Sample());
  std::string other_version = bytes;
  other_version.replace(other_version.find("dialog-1"), 8, "dialog-9");
  EXPECT_FALSE(DecodeDialogRecord(other_version));
  EXPECT_FALSE(DecodeDialogRecord("garbage"));
  EXPECT_FALSE(DecodeDialogRecord("999999999:x"));
  std::string bad_transport = bytes;
  bad_transport.replace(bad_transport.find("3:TCP"), 5, "3:SCT");
  EXPECT_FALSE(DecodeDialogRecord(bad_transport));
  std::string bad_ip = bytes;
  bad_ip.replace(bad_ip.find("9:192.0.2.4"), 11, "9:192.0.2.x");
  EXPECT_FALSE(DecodeDialogRecord(bad_ip));
}

TEST(DialogRecordTest, KeysAndTokens) {
  EXPECT_EQ(DialogKey("b7", 0x5f3a, 1, 0x2a), "b7.5f3a.1.2a");
  EXPECT_EQ(KeyFromRoutingToken("b2b-b7.5f3a.1.2a"), "b7.5f3a.1.2a");
  EXPECT_EQ(OwnerOfKey("b7.5f3a.1.2a"), "b7");
  EXPECT_EQ(KeyFromRoutingToken("b2bua"), "");
  EXPECT_EQ(KeyFromRoutingToken("b2b-"), "");
  EXPECT_EQ(KeyFromRoutingToken("b2b-B7.1.2.3"), "") << "only what DialogKey writes";
  EXPECT_EQ(KeyFromRoutingToken("b2b-.1.2.3"), "") << "no owner";
  EXPECT_EQ(KeyFromRoutingToken("b2b-nodots"), "");
  EXPECT_EQ(KeyFromRoutingToken("b2b-1.2;x"), "");
  EXPECT_EQ(KeyFromRoutingToken("b2b-" + std::string(200, 'a') + ".1"), "") << "too long";
}

}  // namespace
}  // namespace b2bua
