-- Listener "bridgehead" ({daemon_name} = bridgehead): the Internet-facing
-- port 25. Anonymous clients may send to local recipients but not relay, and
-- may not claim a local sender. One milter connection per SMTP session.
--   GATEHOUSE_SOCKET=inet:PORT@127.0.0.1 miltertest -s tests/miltertest/bridgehead.lua

local dir = debug.getinfo(1, "S").source:match("^@?(.*[/\\])") or ""
local H = dofile(dir .. "common.lua")
local R = H.R

H.run("bridgehead.lua", function()
  -- Anonymous Internet client, external sender: local recipient accepted,
  -- relay refused for that recipient only, DATA accepted.
  local s = H.session("bridgehead anonymous", "bridgehead", "192.0.2.10", "mail.partner.example")
  H.mail(s, "<someone@partner.example>", nil, "c")
  H.rcpt(s, "<carol@example.com>", "c")
  H.rcpt(s, "<victim@elsewhere.example>", "y", R.relay_anonymous("<victim@elsewhere.example>"))
  H.rcpt(s, "<alice@example.com>", "c") -- accepted after a rejected recipient
  H.data(s, "a")
  H.abort(s)
  H.close(s)

  -- Anonymous client claiming a local-domain sender (spoofing).
  s = H.session("bridgehead anonymous, local sender", "bridgehead", "192.0.2.11", "spoofer.example.net")
  H.mail(s, "<carol@example.com>", nil, "y", R.anonymous_local_sender)
  H.abort(s) -- Postfix sends ABORT after a rejected MAIL
  H.close(s)

  -- A subdomain of a local domain is local too (domains.local ".example.com").
  s = H.session("bridgehead anonymous, subdomain sender", "bridgehead", "192.0.2.12", "host.example.org")
  H.mail(s, "<dave@sub.example.com>", nil, "y", R.anonymous_local_sender)
  H.abort(s)
  H.close(s)

  -- Restricted recipient all-staff@ (require_authenticated = true) from an
  -- anonymous client; the next recipient of the same message is accepted.
  s = H.session("bridgehead anonymous, restricted recipient", "bridgehead", "192.0.2.13", "mail.partner.example")
  H.mail(s, "<someone@partner.example>", nil, "c")
  H.rcpt(s, "<all-staff@example.com>", "y", R.recipient_requires_auth("<all-staff@example.com>"))
  H.rcpt(s, "<carol@example.com>", "c")
  H.data(s, "a")
  H.abort(s)
  H.close(s)

  -- The null sender (bounces) is anonymous but never rejected for being null.
  s = H.session("bridgehead null sender", "bridgehead", "192.0.2.14", "mail.partner.example")
  H.mail(s, "<>", nil, "c")
  H.rcpt(s, "<carol@example.com>", "c")
  H.rcpt(s, "<victim@elsewhere.example>", "y", R.relay_anonymous("<victim@elsewhere.example>"))
  H.data(s, "a")
  H.abort(s)
  H.close(s)

  -- A client in trusted_networks (10.0.0.0/8) may relay without AUTH.
  s = H.session("bridgehead trusted network", "bridgehead", "10.1.2.3", "app.internal.example.com")
  H.mail(s, "<someone@partner.example>", nil, "c")
  H.rcpt(s, "<victim@elsewhere.example>", "c")
  H.rcpt(s, "<carol@example.com>", "c")
  H.data(s, "a")
  H.abort(s)
  H.close(s)

  -- A session whose {daemon_name} matches no listener (Postfix default:
  -- $myhostname) uses the listener "default": anonymous allowed, relay never.
  s = H.session("default listener", "mx.example.com", "192.0.2.15", "mail.partner.example")
  H.mail(s, "<someone@partner.example>", nil, "c")
  H.rcpt(s, "<carol@example.com>", "c")
  H.rcpt(s, "<victim@elsewhere.example>", "y", R.relay_anonymous("<victim@elsewhere.example>"))
  H.data(s, "a")
  H.abort(s)
  H.close(s)
end)
