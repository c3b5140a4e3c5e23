-- Listener "submission" ({daemon_name} = submission): port 587 for IMAP/POP
-- users. No anonymous access; only "Mail Senders" may submit; senders must be
-- the login's own addresses; "Internet Mail Users" may relay unless they are
-- "Contractors"; all-staff@ accepts only "All Staff" members (not Contractors).
-- {auth_authen} at MAIL = the SASL login. One milter connection per session.
--   GATEHOUSE_SOCKET=inet:PORT@127.0.0.1 miltertest -s tests/miltertest/submission.lua

local dir = debug.getinfo(1, "S").source:match("^@?(.*[/\\])") or ""
local H = dofile(dir .. "common.lua")
local R = H.R

local IP = "198.51.100.20"
local HOST = "laptop.example.net"

H.run("submission.lua", function()
  -- Anonymous: refused at MAIL.
  local s = H.session("submission anonymous", "submission", IP, HOST)
  H.mail(s, "<alice@example.com>", nil, "y", R.anonymous_forbidden)
  H.abort(s)
  H.close(s)

  -- alice (Full-Time Employees, Internet Mail Users, Mail Senders).
  s = H.session("submission alice", "submission", IP, HOST)
  H.mail(s, "<alice@example.com>", "alice", "c")
  H.rcpt(s, "<someone@elsewhere.example>", "c") -- alice may relay
  H.rcpt(s, "<all-staff@example.com>", "c")     -- All Staff via Full-Time Employees
  H.rcpt(s, "<carol@example.com>", "c")
  H.data(s, "a")
  H.abort(s)
  H.close(s)

  -- bob (Contractors, Internet Mail Users, Mail Senders): deny beats allow.
  s = H.session("submission bob", "submission", IP, HOST)
  H.mail(s, "<bob@example.com>", "bob", "c")
  H.rcpt(s, "<x@elsewhere.example>", "y", R.relay_denied("<x@elsewhere.example>"))
  H.rcpt(s, "<all-staff@example.com>", "y", R.recipient_not_authorized("<all-staff@example.com>"))
  H.rcpt(s, "<carol@example.com>", "c")
  H.data(s, "a")
  H.abort(s)
  H.close(s)

  -- carol (no groups): not a Mail Sender, may not submit at all.
  s = H.session("submission carol", "submission", IP, HOST)
  H.mail(s, "<carol@example.com>", "carol", "y", R.submit_denied)
  H.abort(s)
  H.close(s)

  -- alice using bob's address as envelope sender (require_sender_match).
  s = H.session("submission alice as bob", "submission", IP, HOST)
  H.mail(s, "<bob@example.com>", "alice", "y", R.send_as_denied)
  H.abort(s)
  H.close(s)

  -- alice using her second address a.smith@example.com: allowed.
  s = H.session("submission alice as a.smith", "submission", IP, HOST)
  H.mail(s, "<a.smith@example.com>", "alice", "c")
  H.rcpt(s, "<someone@elsewhere.example>", "c")
  H.data(s, "a")
  H.abort(s)
  H.close(s)
end)
