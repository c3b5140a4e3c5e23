-- Option negotiation: gatehouse asks the MTA not to send HELO, headers, EOH,
-- body or unknown commands, not to wait for a reply to CONNECT, and masks
-- every bit it requests with the MTA's offer.
--   GATEHOUSE_SOCKET=inet:PORT@127.0.0.1 miltertest -s tests/miltertest/negotiate.lua

local dir = debug.getinfo(1, "S").source:match("^@?(.*[/\\])") or ""
local H = dofile(dir .. "common.lua")

-- Every SMFIP_* bit miltertest knows, for the informational dump.
local ALL_BITS = {
  "SMFIP_NOCONNECT", "SMFIP_NOHELO", "SMFIP_NOMAIL", "SMFIP_NORCPT",
  "SMFIP_NOBODY", "SMFIP_NOHDRS", "SMFIP_NOEOH", "SMFIP_NR_HDR",
  "SMFIP_NOUNKNOWN", "SMFIP_NODATA", "SMFIP_SKIP", "SMFIP_RCPT_REJ",
  "SMFIP_NR_CONN", "SMFIP_NR_HELO", "SMFIP_NR_MAIL", "SMFIP_NR_RCPT",
  "SMFIP_NR_DATA", "SMFIP_NR_UNKN", "SMFIP_NR_EOH", "SMFIP_NR_BODY",
  "SMFIP_HDR_LEADSPC",
}

local function dump(conn)
  local set = {}
  for _, name in ipairs(ALL_BITS) do
    if _G[name] ~= nil and mt.test_option(conn, _G[name]) then
      table.insert(set, name)
    end
  end
  H.note("protocol bits requested: " .. (#set > 0 and table.concat(set, " ") or "(none)"))
  local acts = {}
  for _, name in ipairs({ "SMFIF_ADDHDRS", "SMFIF_CHGHDRS", "SMFIF_CHGBODY",
    "SMFIF_ADDRCPT", "SMFIF_ADDRCPT_PAR", "SMFIF_DELRCPT", "SMFIF_QUARANTINE",
    "SMFIF_CHGFROM", "SMFIF_SETSYMLIST" }) do
    if _G[name] ~= nil and mt.test_action(conn, _G[name]) then
      table.insert(acts, name)
    end
  end
  H.note("actions requested: " .. (#acts > 0 and table.concat(acts, " ") or "(none)"))
end

local function option(conn, label, name, want)
  local got = mt.test_option(conn, _G[name])
  H.check(got == want, label .. ": " .. name .. " " .. (want and "requested" or "not requested"))
end

-- A policy milter never changes messages: no modification actions that touch
-- the body, the envelope or existing headers (ADDHDRS and SETSYMLIST are allowed).
local function no_modifications(conn, label)
  for _, name in ipairs({ "SMFIF_CHGBODY", "SMFIF_ADDRCPT", "SMFIF_ADDRCPT_PAR",
    "SMFIF_DELRCPT", "SMFIF_CHGHDRS", "SMFIF_QUARANTINE", "SMFIF_CHGFROM" }) do
    H.check(not mt.test_action(conn, _G[name]), label .. ": action " .. name .. " not requested")
  end
end

H.run("negotiate.lua", function()
  ------------------------------------------------------------------
  -- 1. The offer of Postfix >= 2.6 and Sendmail 8.14+: v6, all actions
  --    (0x1FF), all protocol bits (0x1FFFFF).
  local L = "v6 full offer"
  local s = H.session(L, "bridgehead")
  local conn = s.conn
  dump(conn)
  for _, name in ipairs({ "SMFIP_NOHDRS", "SMFIP_NOBODY", "SMFIP_NOEOH",
    "SMFIP_NOUNKNOWN", "SMFIP_NOHELO", "SMFIP_NR_CONN" }) do
    option(conn, L, name, true)
  end
  -- gatehouse decides at MAIL and RCPT and answers ACCEPT at DATA: it must
  -- receive those commands and the MTA must wait for the replies.
  for _, name in ipairs({ "SMFIP_NOCONNECT", "SMFIP_NOMAIL", "SMFIP_NORCPT",
    "SMFIP_NODATA", "SMFIP_NR_MAIL", "SMFIP_NR_RCPT", "SMFIP_NR_DATA" }) do
    option(conn, L, name, false)
  end
  no_modifications(conn, L)
  -- HELO was switched off: miltertest refuses to send it.
  H.check(not pcall(mt.helo, conn, "client.example.net"),
    L .. ": miltertest refuses mt.helo() (NOHELO negotiated)")
  -- A short transaction: the session works after this negotiation.
  H.mail(s, "<someone@partner.example>", nil, "c")
  H.rcpt(s, "<carol@example.com>", "c")
  H.data(s, "a")
  -- Headers were switched off as well (after DATA = ACCEPT nothing else is sent).
  H.check(not pcall(mt.header, conn, "Subject", "x"),
    L .. ": miltertest refuses mt.header() (NOHDRS negotiated)")
  H.abort(s)
  H.close(s)

  ------------------------------------------------------------------
  -- 2. v6 offer without any NR_* ("no reply") bit: gatehouse must not request
  --    NR_CONN and must then answer CONNECT itself.
  local NR_ALL = SMFIP_NR_HDR | SMFIP_NR_CONN | SMFIP_NR_HELO | SMFIP_NR_MAIL
    | SMFIP_NR_RCPT | SMFIP_NR_DATA | SMFIP_NR_UNKN | SMFIP_NR_EOH | SMFIP_NR_BODY
  local prot = 0x1FFFFF & ~NR_ALL
  L = string.format("v6 offer without NR_* (protocol 0x%06X)", prot)
  s = H.session(L, "bridgehead", nil, nil, { 6, prot, 0x1FF })
  conn = s.conn
  dump(conn)
  for _, name in ipairs({ "SMFIP_NOHDRS", "SMFIP_NOBODY", "SMFIP_NOEOH",
    "SMFIP_NOUNKNOWN", "SMFIP_NOHELO" }) do
    option(conn, L, name, true)
  end
  for _, name in ipairs({ "SMFIP_NR_CONN", "SMFIP_NR_HELO", "SMFIP_NR_HDR",
    "SMFIP_NR_EOH", "SMFIP_NR_BODY", "SMFIP_NR_UNKN" }) do
    option(conn, L, name, false)
  end
  -- (H.session already checked that CONNECT was answered with CONTINUE.)
  H.mail(s, "<someone@partner.example>", nil, "c")
  H.rcpt(s, "<victim@elsewhere.example>", "y", H.R.relay_anonymous("<victim@elsewhere.example>"))
  H.rcpt(s, "<carol@example.com>", "c")
  H.data(s, "a")
  H.abort(s)
  H.close(s)

  ------------------------------------------------------------------
  -- 3. An old MTA (Sendmail 8.13 default build): v2, actions 0x3F,
  --    protocol 0x7F. design.md: fall back gracefully; never request a bit
  --    that was not offered (Sendmail fails hard on that).
  L = "v2 offer (actions 0x3F, protocol 0x7F)"
  s = H.session(L, "bridgehead", nil, nil, { 2, 0x7F, 0x3F })
  conn = s.conn
  dump(conn)
  for _, name in ipairs({ "SMFIP_NOHDRS", "SMFIP_NOBODY", "SMFIP_NOEOH", "SMFIP_NOHELO" }) do
    option(conn, L, name, true)
  end
  for _, name in ipairs({ "SMFIP_NOUNKNOWN", "SMFIP_NODATA", "SMFIP_SKIP",
    "SMFIP_RCPT_REJ", "SMFIP_NR_CONN", "SMFIP_NR_HELO", "SMFIP_NR_HDR",
    "SMFIP_NR_EOH", "SMFIP_NR_BODY", "SMFIP_NR_UNKN", "SMFIP_NR_DATA",
    "SMFIP_HDR_LEADSPC" }) do
    option(conn, L, name, false)
  end
  for _, name in ipairs({ "SMFIF_ADDRCPT_PAR", "SMFIF_CHGFROM", "SMFIF_SETSYMLIST" }) do
    H.check(not mt.test_action(conn, _G[name]), L .. ": action " .. name .. " (not offered) not requested")
  end
  -- MAIL and RCPT decisions still work. (No DATA/EOM here: miltertest would
  -- send a DATA command, which protocol v2 does not have.)
  H.mail(s, "<someone@partner.example>", nil, "c")
  H.rcpt(s, "<victim@elsewhere.example>", "y", H.R.relay_anonymous("<victim@elsewhere.example>"))
  H.rcpt(s, "<carol@example.com>", "c")
  H.abort(s)
  H.close(s)
end)
