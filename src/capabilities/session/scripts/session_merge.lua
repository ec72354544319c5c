-- JSON merge patch (RFC 7396) on JSON text, shared by the session scripts that change `data`
-- or `context`. Objects are parsed into {keys, vals, has}; every other value (string, number,
-- array, literal) is kept as its exact text, so it comes back byte for byte: cjson would round
-- numbers past 14 digits and turn [] into {}. The texts are compact JSON written by serde_json
-- (no whitespace, one canonical escaping per key), so keys compare as text.

local function string_end(s, i)
  -- i is at an opening quote; returns the index of the closing one.
  local j = i + 1
  while true do
    local k = string.find(s, '["\\]', j)
    if string.sub(s, k, k) == '"' then
      return k
    end
    j = k + 2
  end
end

local function composite_end(s, i)
  -- i is at '[' or '{'; returns the index just after the matching bracket.
  local depth = 0
  while true do
    local k = string.find(s, '[%[%]{}"]', i)
    local c = string.sub(s, k, k)
    if c == '"' then
      i = string_end(s, k) + 1
    else
      if c == '[' or c == '{' then
        depth = depth + 1
      else
        depth = depth - 1
      end
      i = k + 1
      if depth == 0 then
        return i
      end
    end
  end
end

local function new_object()
  return { keys = {}, vals = {}, has = {} }
end

local function set_member(obj, key, value)
  if not obj.has[key] then
    obj.has[key] = true
    table.insert(obj.keys, key)
  end
  obj.vals[key] = value
end

local parse_object

-- Returns the value starting at i (a table for an object, else its text) and the index after it.
local function parse_value(s, i)
  local c = string.sub(s, i, i)
  if c == '{' then
    return parse_object(s, i)
  end
  local e
  if c == '[' then
    e = composite_end(s, i)
  elseif c == '"' then
    e = string_end(s, i) + 1
  else
    e = string.find(s, '[,}%]]', i) or (#s + 1)
  end
  return string.sub(s, i, e - 1), e
end

parse_object = function(s, i)
  local obj = new_object()
  i = i + 1
  if string.sub(s, i, i) == '}' then
    return obj, i + 1
  end
  while true do
    local e = string_end(s, i)
    local key = string.sub(s, i, e)
    local value
    value, i = parse_value(s, e + 2)
    set_member(obj, key, value)
    if string.sub(s, i, i) == '}' then
      return obj, i + 1
    end
    i = i + 1
  end
end

local function merge(target, patch)
  if type(target) ~= 'table' then
    target = new_object()
  end
  for _, key in ipairs(patch.keys) do
    local value = patch.vals[key]
    if value == 'null' then
      target.vals[key] = nil
    else
      if type(value) == 'table' then
        value = merge(target.vals[key], value)
      end
      set_member(target, key, value)
    end
  end
  return target
end

local function encode(node)
  if type(node) ~= 'table' then
    return node
  end
  local parts = {}
  for _, key in ipairs(node.keys) do
    local value = node.vals[key]
    if value ~= nil then
      table.insert(parts, key .. ':' .. encode(value))
    end
  end
  return '{' .. table.concat(parts, ',') .. '}'
end

local function merge_patch(target_text, patch_text)
  local target = parse_value(target_text, 1)
  local patch = parse_value(patch_text, 1)
  return encode(merge(target, patch))
end
