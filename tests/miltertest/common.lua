-- Shared helpers for the gatehouse miltertest scripts. Not a test by itself:
-- every script loads it with dofile() from its own folder.
--
-- Facts about miltertest (Debian 12, opendkim 2.11.0~beta2, "v1.6.0") these
-- helpers rely on, checked against that binary:
--   * A Lua error makes miltertest exit 1 but it prints NO message, so H.run()
--     writes every failure to stderr itself.
--   * mt.getreply() returns only the reply command letter (as a number). The
--     text of an SMFIR_REPLYCODE ('y') reply to MAIL/RCPT is read and dropped;
--     only end-of-message replies are kept (mt.eom_check MT_SMTPREPLY). So the
--     scripts check the letter and print the text the spec requires.
--   * mt.negotiate(conn, version, protocol_steps, actions): the code takes the
--     protocol bits as 3rd and the actions as 4th argument (the man page lists
--     them the other way round); nil = offer everything (v6, 0x1FFFFF, 0x1FF).
--   * With SMFIP_NR_CONN negotiated, mt.conninfo() reads no reply and
--     mt.getreply() then says SMFIR_CONTINUE.
--   * mt.* calls return nil on success or an error string (e.g. when the
--     filter closed the socket or did not answer within mt.set_timeout()).

local H = {}

H.TIMEOUT = 5

local sock = os.getenv("GATEHOUSE_SOCKET")
if sock == nil or sock == "" then
  io.stderr:write("FAIL: GATEHOUSE_SOCKET is not set; "
    .. "run as: GATEHOUSE_SOCKET=inet:PORT@127.0.0.1 miltertest -s FILE\n")
  error("GATEHOUSE_SOCKET is not set", 0)
end
H.socket = sock

mt.set_timeout(H.TIMEOUT)

local NAMES = {
  c = "CONTINUE", a = "ACCEPT", r = "REJECT", t = "TEMPFAIL",
  y = "REPLYCODE", d = "DISCARD", s = "SKIP", p = "PROGRESS", O = "OPTNEG",
}

-- A reply as a one-letter string ("c", "y", ...); "none" before any reply.
function H.letter(code)
  if code == nil or code == 0 then return "none" end
  return string.char(math.tointeger(code) or 0)
end

local function describe(letter, text)
  local s = letter .. " " .. (NAMES[letter] or "?")
  if text ~= nil then s = s .. ' "' .. text .. '"' end
  return s
end

-- Assertion failure: a table, so H.run can tell it from a Lua/miltertest error.
function H.fail(msg)
  error({ assertion = true, msg = msg }, 0)
end

function H.check(cond, what)
  if not cond then H.fail(what) end
  print("ok   " .. what)
end

function H.note(text)
  print("     " .. text)
end

-- Runs the body of a script; reports the first failure on stderr and makes
-- miltertest exit non-zero.
function H.run(name, body)
  local ok, err = xpcall(body, function(e)
    if type(e) == "table" and e.assertion then return e.msg end
    return debug.traceback("error: " .. tostring(e), 2)
  end)
  io.stdout:flush()
  if not ok then
    io.stderr:write("FAIL: " .. name .. ": " .. tostring(err) .. "\n")
    io.stderr:flush()
    error(name .. " failed", 0)
  end
  print("PASS " .. name)
end

-- Checks the result of an mt.* call and the reply letter that came with it.
-- `text` is the SMTP reply the spec requires for a 'y' reply; miltertest
-- cannot see it, so it is only printed.
function H.expect(conn, what, ret, want, text)
  if ret ~= nil then
    H.fail(what .. ": miltertest: " .. tostring(ret)
      .. " (gatehouse closed the connection or did not answer in "
      .. H.TIMEOUT .. "s?)")
  end
  local got = H.letter(mt.getreply(conn))
  if got ~= want then
    H.fail(what .. ": expected " .. describe(want, text) .. ", got "
      .. describe(got))
  end
  local line = "ok   " .. what .. " -> " .. describe(want)
  if text ~= nil then line = line .. " [spec text: " .. text .. "]" end
  print(line)
end

local function bare(addr)
  return (addr:gsub("^<(.*)>$", "%1"))
end

-- Opens one milter connection = one SMTP session, as Postfix does:
-- negotiation (default offer unless `offer` = {version, protocol, actions}),
-- connect macros ({daemon_name} = listener, none if nil) and CONNECT.
-- Returns a session table used by the functions below.
function H.session(label, listener, client_ip, client_name, offer)
  client_ip = client_ip or "192.0.2.10"
  client_name = client_name or "client.example.net"
  local s = { label = label }
  print("---- " .. label)
  local conn = mt.connect(H.socket, 20, 0.25) -- retries: gatehouse may still be starting
  if conn == nil then H.fail(label .. ": mt.connect(" .. H.socket .. ") failed") end
  s.conn = conn
  local ret
  if offer then
    ret = mt.negotiate(conn, offer[1], offer[2], offer[3])
  else
    ret = mt.negotiate(conn, nil, nil, nil)
  end
  if ret ~= nil then H.fail(label .. ": negotiation: miltertest: " .. tostring(ret)) end
  if H.letter(mt.getreply(conn)) ~= "O" then
    H.fail(label .. ": negotiation: expected an OPTNEG reply, got "
      .. describe(H.letter(mt.getreply(conn))))
  end
  local offered = offer and string.format("v%d protocol 0x%X actions 0x%X",
    offer[1], offer[2], offer[3]) or "v6 protocol 0x1FFFFF actions 0x1FF"
  print("ok   " .. label .. ": OPTNEG (" .. offered .. ") -> O OPTNEG")
  -- The scripts need a reply to every MAIL, RCPT and DATA.
  local needed = {
    SMFIP_NOMAIL = SMFIP_NOMAIL, SMFIP_NORCPT = SMFIP_NORCPT,
    SMFIP_NR_MAIL = SMFIP_NR_MAIL, SMFIP_NR_RCPT = SMFIP_NR_RCPT,
  }
  for name, bit in pairs(needed) do
    if mt.test_option(conn, bit) then
      H.fail(label .. ": gatehouse negotiated " .. name
        .. ": it would never answer that stage")
    end
  end
  local macros = { "j", "mx.example.com", "{client_addr}", client_ip }
  if listener ~= nil then
    table.insert(macros, "{daemon_name}")
    table.insert(macros, listener)
  end
  ret = mt.macro(conn, SMFIC_CONNECT, table.unpack(macros))
  if ret ~= nil then H.fail(label .. ": connect macros: miltertest: " .. tostring(ret)) end
  ret = mt.conninfo(conn, client_name, client_ip)
  local nr = mt.test_option(conn, SMFIP_NR_CONN)
  H.expect(conn, label .. ": CONNECT " .. client_name .. " [" .. client_ip .. "]"
    .. (nr and " (NR_CONN: no reply read)" or " (reply expected)"), ret, "c")
  return s
end

-- MAIL FROM. `login` = {auth_authen} (SASL login) or nil for anonymous.
function H.mail(s, sender, login, want, text)
  local ret
  if login ~= nil then
    ret = mt.macro(s.conn, SMFIC_MAIL, "{auth_type}", "PLAIN",
      "{auth_authen}", login, "{mail_addr}", bare(sender))
  else
    ret = mt.macro(s.conn, SMFIC_MAIL, "{mail_addr}", bare(sender))
  end
  if ret ~= nil then H.fail(s.label .. ": MAIL macros: miltertest: " .. tostring(ret)) end
  ret = mt.mailfrom(s.conn, sender)
  local who = login and ("auth " .. login) or "anonymous"
  H.expect(s.conn, s.label .. ": MAIL FROM:" .. sender .. " (" .. who .. ")",
    ret, want, text)
end

function H.rcpt(s, rcpt, want, text)
  local ret = mt.macro(s.conn, SMFIC_RCPT, "{rcpt_addr}", bare(rcpt))
  if ret ~= nil then H.fail(s.label .. ": RCPT macros: miltertest: " .. tostring(ret)) end
  ret = mt.rcptto(s.conn, rcpt)
  H.expect(s.conn, s.label .. ": RCPT TO:" .. rcpt, ret, want, text)
end

function H.data(s, want)
  local ret = mt.data(s.conn)
  H.expect(s.conn, s.label .. ": DATA", ret, want or "a")
end

-- ABORT gets no reply; a stray reply would desynchronise the next step.
function H.abort(s)
  local ret = mt.abort(s.conn)
  if ret ~= nil then H.fail(s.label .. ": ABORT: miltertest: " .. tostring(ret)) end
  print("ok   " .. s.label .. ": ABORT sent (no reply expected)")
end

function H.close(s)
  mt.disconnect(s.conn)
  print("ok   " .. s.label .. ": QUIT, disconnected")
end

-- The replies the spec requires (conf/gatehouse.toml [replies]).
H.R = {
  anonymous_forbidden = "530 5.7.0 Authentication required",
  submit_denied = "550 5.7.1 Client does not have permissions to submit to this server",
  send_as_denied = "550 5.7.1 Client does not have permissions to send as this sender",
  anonymous_local_sender = "550 5.7.1 Anonymous client does not have permissions to send as this sender",
}
function H.R.relay_anonymous(rcpt) return "550 5.7.1 " .. rcpt .. ": Unable to relay" end
function H.R.relay_denied(rcpt) return "550 5.7.1 " .. rcpt .. ": Not permitted to relay" end
function H.R.recipient_requires_auth(rcpt)
  return "550 5.7.1 " .. rcpt .. ": Authentication required to send to this recipient"
end
function H.R.recipient_not_authorized(rcpt)
  return "550 5.7.1 " .. rcpt .. ": Not authorized to send to this recipient"
end

return H
