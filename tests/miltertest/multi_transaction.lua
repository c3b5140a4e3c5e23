-- Several transactions on one milter connection. Postfix sends ABORT after
-- every transaction (also after a rejected MAIL, and sometimes twice); the
-- connection state (listener, client) must survive it, the transaction state
-- (sender, login, recipients, decisions) must not. Replies are per recipient.
--   GATEHOUSE_SOCKET=inet:PORT@127.0.0.1 miltertest -s tests/miltertest/multi_transaction.lua

local dir = debug.getinfo(1, "S").source:match("^@?(.*[/\\])") or ""
local H = dofile(dir .. "common.lua")
local R = H.R

H.run("multi_transaction.lua", function()
  ------------------------------------------------------------------
  -- Submission session authenticated as alice, Postfix-style ABORTs.
  local s = H.session("alice, 3 transactions", "submission", "198.51.100.21", "laptop.example.net")
  -- T1: accepted message.
  H.mail(s, "<alice@example.com>", "alice", "c")
  H.rcpt(s, "<someone@elsewhere.example>", "c")
  H.data(s, "a")
  H.abort(s)
  -- T2: sender that is not hers.
  H.mail(s, "<bob@example.com>", "alice", "y", R.send_as_denied)
  H.abort(s)
  -- T3: her other address; relay and all-staff allowed again.
  H.mail(s, "<a.smith@example.com>", "alice", "c")
  H.rcpt(s, "<victim@elsewhere.example>", "c")
  H.rcpt(s, "<all-staff@example.com>", "c")
  H.data(s, "a")
  H.abort(s)
  H.abort(s) -- Postfix was seen sending ABORT, ABORT, QUIT
  H.close(s)

  ------------------------------------------------------------------
  -- Submission session: MAIL before AUTH is refused, the client then
  -- authenticates as bob on the same SMTP session (same milter connection).
  s = H.session("anonymous then bob", "submission", "198.51.100.22", "pc.example.net")
  H.mail(s, "<bob@example.com>", nil, "y", R.anonymous_forbidden)
  H.abort(s)
  H.mail(s, "<bob@example.com>", "bob", "c")
  H.rcpt(s, "<x@elsewhere.example>", "y", R.relay_denied("<x@elsewhere.example>"))
  H.rcpt(s, "<carol@example.com>", "c") -- rejected, then the next one accepted
  H.rcpt(s, "<all-staff@example.com>", "y", R.recipient_not_authorized("<all-staff@example.com>"))
  H.rcpt(s, "<dave@sub.example.com>", "c") -- subdomain: local, no relay
  H.data(s, "a")
  H.abort(s)
  -- Same decisions in the next transaction (nothing cached wrongly).
  H.mail(s, "<bob@example.com>", "bob", "c")
  H.rcpt(s, "<carol@example.com>", "c")
  H.rcpt(s, "<x@elsewhere.example>", "y", R.relay_denied("<x@elsewhere.example>"))
  H.data(s, "a")
  H.abort(s)
  H.close(s)

  ------------------------------------------------------------------
  -- Bridgehead session, anonymous client.
  s = H.session("bridgehead, 3 transactions", "bridgehead", "192.0.2.20", "mail.partner.example")
  -- T1: relay refused for one recipient, the next accepted.
  H.mail(s, "<someone@partner.example>", nil, "c")
  H.rcpt(s, "<victim@elsewhere.example>", "y", R.relay_anonymous("<victim@elsewhere.example>"))
  H.rcpt(s, "<carol@example.com>", "c")
  H.data(s, "a")
  H.abort(s)
  -- T2: spoofed local sender.
  H.mail(s, "<carol@example.com>", nil, "y", R.anonymous_local_sender)
  H.abort(s)
  -- T3: bounce (null sender) to a local user; relay still refused.
  H.mail(s, "<>", nil, "c")
  H.rcpt(s, "<alice@example.com>", "c")
  H.rcpt(s, "<victim@elsewhere.example>", "y", R.relay_anonymous("<victim@elsewhere.example>"))
  H.data(s, "a")
  H.abort(s)
  H.close(s)

  ------------------------------------------------------------------
  -- Sendmail-style: no ABORT at the end of a transaction (Sendmail sends it
  -- only for RSET and the like); each MAIL starts a new transaction by itself.
  s = H.session("alice, no ABORT between transactions", "submission", "198.51.100.23", "laptop.example.net")
  H.mail(s, "<alice@example.com>", "alice", "c")
  H.rcpt(s, "<someone@elsewhere.example>", "c")
  H.data(s, "a")
  H.mail(s, "<bob@example.com>", "alice", "y", R.send_as_denied)
  H.mail(s, "<a.smith@example.com>", "alice", "c")
  H.rcpt(s, "<someone@elsewhere.example>", "c")
  H.data(s, "a")
  H.close(s)
end)
