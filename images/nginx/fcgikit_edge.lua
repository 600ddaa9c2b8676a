-- fcgikit's edge: the upstreams' backends, changed at run time without reloading nginx.
--
-- fcgikit writes the list into the running container (`docker exec`, never through a
-- listener) as /run/fcgikit/backends:
--
--     version 3f2a9c1d0e4b
--     workers 172.18.0.3:9000 demo-workers-1
--     workers 172.18.0.4:9000 demo-workers-2
--     cgi 172.18.0.5:9000 demo-cgi-1
--
-- Every nginx worker process re-reads it from a timer (a few times a second) and keeps
-- its own copy; the balancer of each upstream picks round-robin from it, per request.
-- When every worker process has loaded a
-- version, /run/fcgikit/loaded says so: fcgikit waits for that before it drains a
-- backend it removed (no new request goes to it after that point).
--
-- Health: a backend that refuses or times out on connect is marked down at once (in the
-- shared dict, which the balancer reads for every pick: from the moment of the mark no
-- worker process sends a new request there) and the request is retried on another one; worker process 0 probes every backend with a TCP connect twice a second, takes
-- marked ones back when they accept, and marks one down that stops accepting. A reset
-- or timeout after the connect (one killed process of a spawn pool, the others still
-- answering on the same socket) marks nothing. With no list loaded (compose.yaml, no fcgikit), the balancer sets no peer
-- and nginx uses the upstream's own `server` lines (resolved by nginx at start).

local balancer = require "ngx.balancer"

local M = {}

local BACKENDS = "/run/fcgikit/backends"
-- fcgikit's copy of the last list, on the container's /etc/nginx volume (where it writes
-- nginx.conf): read when BACKENDS is missing, i.e. after nginx's container restarted (its
-- tmpfs came back empty), so a restarted nginx serves the workers at once.
local SAVED = "/etc/nginx/fcgikit-backends"
local LOADED = "/run/fcgikit/loaded"
local MAX_TRIES = 3          -- like fastcgi_next_upstream_tries
local DOWN_TTL = 5           -- seconds a mark lasts unless a probe renews it
local PROBE_TIMEOUT = 250    -- ms for a probe's connect
local PROBE_FAILURES = 2     -- probes in a row not accepted: an unmarked backend is marked down

local shared = ngx.shared.fcgikit_edge
local pools = nil            -- this worker process's list: pool name -> array of peers
local loaded_text = nil      -- the file's text that `pools` was made from
local loaded_version = nil
local next_index = {}        -- round-robin position per pool

local function log(level, ...)
    ngx.log(level, "fcgikit edge: ", ...)
end

-- "ip:port" -> ip, port
local function split_address(address)
    local host, port = address:match("^%[?([^%]]+)%]?:(%d+)$")
    if not host then
        return nil
    end
    return host, tonumber(port)
end

-- The file's text -> version, pools (nil, error on a malformed line: the old list stays).
local function parse(text)
    local version, result, number = nil, {}, 0
    for line in text:gmatch("[^\n]+") do
        number = number + 1
        if not line:match("^%s*#") and line:match("%S") then
            local first, second, third = line:match("^%s*(%S+)%s+(%S+)%s*(%S*)")
            if first == "version" then
                version = second
            elseif first then
                local host, port = split_address(second)
                if not host then
                    return nil, "line " .. number .. ": not ip:port: " .. second
                end
                local peers = result[first]
                if not peers then
                    peers = {}
                    result[first] = peers
                end
                peers[#peers + 1] = { host = host, port = port, key = second, name = third,
                                      mark = "down:" .. second }
            else
                return nil, "line " .. number .. ": expected POOL ADDRESS [NAME]"
            end
        end
    end
    if not version then
        return nil, "no version line"
    end
    return version, result
end

local function read_file(path)
    local file = io.open(path, "r")
    if not file then
        return nil
    end
    local text = file:read("*a")
    file:close()
    return text
end

local function reload_list()
    local text = read_file(BACKENDS) or read_file(SAVED)
    if text == nil or text == loaded_text then
        return
    end
    local version, result = parse(text)
    if not version then
        if loaded_text ~= text then
            log(ngx.ERR, BACKENDS, ": ", result, "; keeping the previous list")
        end
        loaded_text = text
        return
    end
    pools = result
    loaded_text = text
    loaded_version = version
    local counts = {}
    for name, peers in pairs(result) do
        counts[#counts + 1] = name .. "=" .. #peers
    end
    table.sort(counts)
    log(ngx.NOTICE, "backends version ", version, " loaded: ", table.concat(counts, " "))
end

-- This worker process says which version it serves; worker 0 writes the file fcgikit waits
-- for once every worker process serves the same one.
local function acknowledge()
    if not loaded_version then
        return
    end
    local id = ngx.worker.id()
    shared:set("loaded:" .. id, loaded_version)
    if id ~= 0 then
        return
    end
    for other = 1, ngx.worker.count() - 1 do
        if shared:get("loaded:" .. other) ~= loaded_version then
            return
        end
    end
    if shared:get("acknowledged") == loaded_version then
        return
    end
    local file, err = io.open(LOADED .. ".new", "w")
    if not file then
        log(ngx.WARN, "cannot write ", LOADED, ": ", err)
        return
    end
    file:write(loaded_version, "\n")
    file:close()
    local ok, rename_err = os.rename(LOADED .. ".new", LOADED)
    if not ok then
        log(ngx.WARN, "cannot write ", LOADED, ": ", rename_err)
        return
    end
    shared:set("acknowledged", loaded_version)
end

-- Marks live in the shared dict only, read by every pick: a copy per worker process,
-- refreshed by its timer, let another worker process send new requests to a backend for
-- up to a tick after it was marked (each a 504 at the request timeout when the host is
-- cut off: the request went out on a kept-alive connection and is not replayed).
local function mark_down(key, why)
    if not shared:get("down:" .. key) then
        log(ngx.WARN, "backend ", key, " down (", why, "); probing it back in")
    end
    shared:set("down:" .. key, true, DOWN_TTL)
end

-- Worker process 0 checks every backend twice a second with a TCP connect (in parallel,
-- PROBE_TIMEOUT each): a marked one that accepts is taken back at once; an unmarked one
-- that fails PROBE_FAILURES times in a row is marked down (a host cut off while nginx
-- still holds kept-alive connections to it: those never connect again, so the passive
-- mark alone would not see it). Two in a row, so one slow accept under load is no mark.
local probe_failures = {}

local function probe_one(peer)
    local sock = ngx.socket.tcp()
    sock:settimeout(PROBE_TIMEOUT)
    local ok = sock:connect(peer.host, peer.port)
    if ok then
        sock:close()
    end
    return ok
end

local function probe_all(premature)
    if premature or not pools then
        return
    end
    local peers, threads = {}, {}
    for _, list in pairs(pools) do
        for i = 1, #list do
            peers[#peers + 1] = list[i]
            threads[#threads + 1] = ngx.thread.spawn(probe_one, list[i])
        end
    end
    local seen = {}
    for i = 1, #threads do
        local _, accepted = ngx.thread.wait(threads[i])
        local peer = peers[i]
        local key = "down:" .. peer.key
        seen[peer.key] = true
        if accepted then
            probe_failures[peer.key] = nil
            if shared:get(key) then
                shared:delete(key)
                log(ngx.WARN, "backend ", peer.key, " accepts connections again")
            end
        else
            local failures = (probe_failures[peer.key] or 0) + 1
            probe_failures[peer.key] = failures
            if shared:get(key) then
                shared:set(key, true, DOWN_TTL)
            elseif failures >= PROBE_FAILURES then
                shared:set(key, true, DOWN_TTL)
                log(ngx.WARN, "backend ", peer.key, " down (", failures, " probes not accepted); probing it back in")
            end
        end
    end
    for key in pairs(probe_failures) do
        if not seen[key] then
            probe_failures[key] = nil
        end
    end
end

local function tick(premature)
    if premature then
        return
    end
    local ok, err = pcall(reload_list)
    if not ok then
        log(ngx.ERR, "reading ", BACKENDS, ": ", err)
    end
    pcall(acknowledge)
end

function M.init_worker()
    -- The list before this worker process takes its first request (a worker started by a
    -- reload would otherwise have none until its first tick: 502).
    local loaded, load_err = pcall(reload_list)
    if not loaded then
        log(ngx.ERR, "reading ", BACKENDS, ": ", load_err)
    end
    local ok, err = ngx.timer.every(0.25, tick)
    if not ok then
        log(ngx.ERR, "cannot start the list timer: ", err)
    end
    if ngx.worker.id() == 0 then
        ok, err = ngx.timer.every(0.5, probe_all)
        if not ok then
            log(ngx.ERR, "cannot start the probe timer: ", err)
        end
    end
    ngx.timer.at(0, tick)
end

-- The tries of this request's current upstream so far, from nginx's own variables (read
-- only when a try failed, so the usual path touches neither ngx.var nor ngx.ctx). nginx
-- writes a try without an address (the one being chosen now, or the start of an
-- error_page redirect's upstream) as " : ", so the tries of this upstream are the
-- entries after the last " : " once the trailing one is cut: "ADDRESS" in
-- $upstream_addr, and in $upstream_connect_time "-" for a try that never connected.
local function current_group(text)
    text = (text or ""):gsub("%s*:%s*$", "")
    local group = text:match(".* : (.*)$") or text
    local entries = {}
    for entry in group:gmatch("[^,%s]+") do
        entries[#entries + 1] = entry
    end
    return entries
end

-- A retry: mark the failed backend down when its try never connected, and return the
-- addresses this request has tried already.
local function after_failure(failure)
    local addresses = current_group(ngx.var.upstream_addr)
    local times = current_group(ngx.var.upstream_connect_time)
    local tried = {}
    for i = 1, #addresses do
        tried[addresses[i]] = true
    end
    local last = addresses[#addresses]
    if last and (times[#addresses] or "-") == "-" then
        mark_down(last, "connect " .. tostring(failure))
    end
    return tried
end

-- balancer_by_lua for upstream `pool`.
function M.balance(pool)
    if not pools then
        return -- no list loaded: nginx's own round robin over the upstream's `server` lines
    end
    local peers = pools[pool]
    local count = peers and #peers or 0
    if count == 0 then
        return -- nginx's round robin over the placeholder `server ... down`: "no live upstreams", 502
    end
    local failure = balancer.get_last_failure()
    local tried = failure and after_failure(failure)
    local start = next_index[pool] or 0
    for step = 1, count do
        local index = (start + step - 1) % count + 1
        local peer = peers[index]
        local key = peer.key
        if not (tried and tried[key]) and not shared:get(peer.mark) then
            next_index[pool] = index
            local ok, err = balancer.set_current_peer(peer.host, peer.port)
            if not ok then
                log(ngx.ERR, "set_current_peer ", key, ": ", err)
                return
            end
            if not failure and count > 1 then
                -- The upstream's only server is the placeholder `down`: nginx counts 0 tries,
                -- so this sets them all (capped by fastcgi_next_upstream_tries).
                balancer.set_more_tries(count < MAX_TRIES and count or MAX_TRIES)
            end
            return
        end
    end
    -- Every backend is down or tried: no peer set, so nginx's round robin picks from the
    -- upstream's placeholder `server ... down` and answers 502 (error_page: the fallback).
end

-- access_by_lua of the fallback location: replay a request on the fork-CGI gateway only
-- when no FastCGI worker can have run it: every try failed to connect (or none was
-- live), or a try that connected failed within `window` seconds of the request's start
-- (a kept-alive connection the worker closed as it drained; nginx replays those on
-- another worker too, fastcgi_next_upstream_timeout). A timeout, a reset later on, or a
-- POST/PATCH/LOCK that was sent keeps its error: never a second run of the app.
function M.fallback(window)
    local times = ngx.var.upstream_connect_time or ""
    if not times:find("%d") then
        return
    end
    ngx.update_time()
    local method = ngx.req.get_method()
    if ngx.now() - ngx.req.start_time() > window
            or method == "POST" or method == "PATCH" or method == "LOCK" then
        local statuses = current_group(ngx.var.upstream_status)
        return ngx.exit(tonumber(statuses[#statuses]) or 502)
    end
end

return M
