-- post.lua - wrk script: replays one captured Rspamd POST with a body of
-- the benchmark's size, made unique per request (queue id and one header
-- line of the message), so that no request is a retry of another and no
-- content is shared between requests.
--   wrk ... -s post.lua URL -- HEADERS_FILE HEAD_FILE REST_FILE TAG [NRCPT POOL]
-- HEADERS_FILE: "Name: value" lines; the message is HEAD_FILE's bytes,
-- an "X-Bench-Seq:" line, then REST_FILE's bytes.  With POOL > 0 each
-- request goes to NRCPT recipients drawn at random from POOL addresses
-- (user0..user<POOL-1>@example.net), as real traffic spreads over many
-- mailboxes; else to the headers file's recipients, the same every time.
-- done() prints one JSON line: requests, seconds, p50_us, p99_us, non2xx,
-- errors.

local counter = 0
local threads = {}

local function slurp(path)
	local f = assert(io.open(path, "rb"))
	local s = f:read("*a")
	f:close()
	return s
end

function setup(thread)
	thread:set("tid", #threads + 1)
	table.insert(threads, thread)
end

function init(args)
	hdrs = {}
	for line in slurp(args[1]):gmatch("[^\r\n]+") do
		local k, v = line:match("^([^:]+):%s*(.*)$")
		if k then hdrs[k] = v end
	end
	head = slurp(args[2])
	rest = slurp(args[3])
	tag = args[4] or "b"
	nrcpt = tonumber(args[5] or "0") or 0
	pool = tonumber(args[6] or "0") or 0
	math.randomseed(os.time() + (tid or 0) * 7919)
end

-- NRCPT distinct addresses out of POOL, as a JSON array.
local function spread_rcpts()
	local picked, out = {}, {}
	while #out < nrcpt do
		local i = math.random(0, pool - 1)
		if not picked[i] then
			picked[i] = true
			table.insert(out, '"user' .. i .. '@example.net"')
		end
	end
	return "[" .. table.concat(out, ",") .. "]"
end

function request()
	counter = counter + 1
	local seq = tag .. "-" .. tid .. "-" .. counter
	hdrs["X-Rspamd-qid"] = seq
	if pool > 0 then
		hdrs["X-Rspamd-rcpt"] = spread_rcpts()
	end
	local body = head .. "X-Bench-Seq: " .. seq .. "\r\n" .. rest
	return wrk.format("POST", nil, hdrs, body)
end

function done(summary, latency, requests)
	io.write(string.format(
		'RESULT {"requests": %d, "seconds": %.3f, "p50_us": %d, "p99_us": %d, ' ..
		'"non2xx": %d, "errors": %d}\n',
		summary.requests, summary.duration / 1e6,
		latency:percentile(50), latency:percentile(99), summary.errors.status,
		summary.errors.connect + summary.errors.read + summary.errors.write +
		summary.errors.timeout))
end
