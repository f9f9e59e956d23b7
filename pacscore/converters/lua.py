"""Lua converters: ``lua "code"`` and ``lua:code`` (run by lupa).

As in Conquest, ``lua:`` takes the rest of the line, semicolons and all,
as Lua code, unless it is only a Lua file's name (``lua:path/to/x.lua``,
pacs's own: see ``LuaColonCommand``).  As in Conquest, a statement that
is a Lua file's name, ``x.lua`` or ``x.lua(text)``, runs it as
``lua:x.lua`` does, with the global
``command_line`` the %-expanded text; ``process with x.lua text`` runs it
on the object likewise and ``process ... by x.lua text`` (a queued
action) with ``Data`` an empty object (``runProcessScript``), as every run
without an object gets (Conquest's dummyddo: ``readdicom(path)`` fills it).

A script sees ``Data`` (the object's data set: ``Data.PatientName``,
``Data['0010,0010']``, ``Data.ReferencedSeriesSequence[0].SeriesInstanceUID``
read and written, 0-based sequence items (``Data.Seq[#Data.Seq]`` appends
a new one, as in Conquest) and ``Data.Seq.Name`` for item 0's
element as in Conquest, an absent element nil, every value text as
Conquest hands it (``Data.Rows == '512'``; UTF-8 text, see
``luastrings``), ``Data:Delete(tag)`` or
assigning nil deletes, ``Data.Seq = {}`` makes an empty sequence;
Conquest's ``Data:GetVR(group, element[, asText])``: the value's bytes as
a table from index 0, or as a string when ``asText`` (a text VR's text, as
``Data.X``), a sequence for a sequence, nil when absent;
``Data:SetVR(group, element, value)``: such a table's bytes, a string's
(a text VR's text, as ``Data.X = value``), made with the dictionary's VR
when absent, or copies of a sequence's items; ``getvr(object, ...)`` and
``setvr(object, ...)`` the same; export Data's pixel data read from the
stored file when asked for),
``Data.Storage`` (the device, MAGn: read and set as ``storage MAGn`` in
import converters, in export converters the one the object is on),
``CallingAE``, ``CalledAE``, ``Association.Calling`` and ``.Called``,
``Filename``, ``Command`` (the DIMSE command set, read and written as Data
is, for the ``[lua]`` command and clienterror scripts), ``Global``
(Conquest's ``BaseDir``, the working folder with its slash, ``ConfigFile``
and ``RootConfig``, and dicom.ini's main section, its secrets left out when
sandboxed; names in any case: ``Global.basedir``) and the functions
``print`` (to the server log), ``debuglog`` (likewise, to the debug log),
``forward(ae)``, ``reject()`` and ``destroy()`` (as returning
``'reject'`` or ``'destroy'``, unless the script returns another outcome),
``script(rule)`` (runs a converter rule on the same
object and returns its outcome's name; ``script(x, rule)`` and
``x:Script(rule)`` on the object x, whose destroy is no fate of Data's, and
whose image forward sends x as it is in an export converter and is
refused in an import converter, which keeps no copy to send;
sandboxed, a command that runs a program or writes a file it is told to,
``system``, ``save to`` ..., is refused and the rule stops),
``get_amap(n)`` (acrnema.map's entry n from 0: AE, host, port,
compression; nothing past the last), ``dictionary(group, element)`` (the
tag's name; ``dictionary(name)`` its group and element),
``dbquery(table, fields, where, order)`` (a read-only SELECT on an index
table, rows as tables of strings), ``genuid()``, ``changeuid(uid[, to[,
stage[, type]]])`` and ``changeuidback(new[, stage[, type]])`` (the UIDMODS
pairs, as ``newuids`` keeps them; ``to`` any text, as Conquest's) and
``crc(text)`` (%A's checksum), ``tickcount()`` and ``sleep(ms)`` (at most
MAX_SLEEP in all per run, in a worker thread), ``servercommand('name:arguments')`` (a
control command's output, nil when empty, or nil and the reason; see
``servercommands``; sandboxed, only read-only commands, no secret shown),
``dicomquery(ae, level, query)`` (the matches of a C-FIND as an array of objects; empty, and the reason, when it failed) and
``dicommove(source, destination, query[, patientroot])`` (a C-MOVE waited
for: true, or nil and the reason; see ``dicomrequests``).  Objects of its own: ``newdicomobject()``
(or ``DicomObject:new()``: an empty object used as Data is, changing
nothing stored) and ``newdicomarray()`` (``DicomObject:newarray()``: an
empty sequence, for ``SetVR`` or ``Data.Seq = a``, which set copies of its
items; ``a:Add(x)`` appends a copy of x), ``x:Copy()`` (a deep copy of x, a
new object); ``x:Read(path)`` (``readdicom(x, path)``,
``readdicom(path)`` for Data: 1, or nil and the reason when the file is
missing or unreadable; Data takes no compressed object) and
``x:Write(path)`` (``writedicom``: a Part-10 file; Data of an export
converter is the whole stored object), ``x:Dump(path)`` (its elements
as text, as ``dump_header`` shows them) and ``dofile(path)`` (runs a Lua
file with the script's globals), files as ``luafiles`` allows:
any with ``LuaAllowUnsafe`` (``dofile`` too), else only those in
``LuaFileFolder``; ``writeheader([x,] path)`` (``x:Dump``),
``x:free()`` (``deletedicomobject(x)``: empties an object the script made),
Conquest's pixel functions (``getpixel`` ..., ``x:GetPixel`` ...: see
``luapixels``) and ``sql``, ``dicomdelete``, ``get_sqldef``, ``heapinfo``
and ``Global.Key = value`` (see ``luaadmin``).  It
may return ``'destroy'``, ``'reject'``, ``'stop'`` or ``'defer'`` (export
converters; elsewhere it stops the line, with a warning); nothing means go on.

Each worker thread has its own Lua state (lupa runtimes are not thread
safe), and so has each association (``context.session``, as in Conquest):
its scripts take turns in it and share their globals, each run binding
its own ``Data``, functions ...; a script is compiled once per state (of
inline code, the last ``MAX_CHUNKS`` run stay compiled).
Scripts run sandboxed: only
string, table, math, os.time/date/clock, the safe base functions and a
``package`` table holding only Lua's ``path`` and ``cpath`` strings (Conquest's
dicom.ini adds to ``package.path``; ``require`` stays out of reach), unless
dicom.ini says ``LuaAllowUnsafe = 1`` (then what a script sets in
``package.path`` and ``package.cpath`` lasts for its run); Lua never reaches
Python objects' attributes.  ``LuaMaxInstructions`` (default 10,000,000) stops a run-away
script; what it runs through ``script('lua ...')`` counts towards it.  It
counts Lua instructions, not the time inside one call of a C function
(``string.find`` of a pathological pattern), which a stop leaves behind
after ``QuitGracePeriod``.  A Lua state holds at
most MAX_MEMORY, and what one run puts into Python objects (values, items,
a page's output: ``LuaRuntime.charge``) at most as much again.  A
failing script is logged and ends its line with ``stop`` (Conquest goes on
with the line: see ``_LuaCommandBase.run``).
"""

import contextlib
import copy
import functools
import inspect
import os
import re
import threading
import time
from typing import NamedTuple

import lupa.lua54 as lupa
from pydicom.datadict import keyword_for_tag, tag_for_keyword
from pydicom.dataelem import RawDataElement, convert_raw_data_element
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element
from pydicom.sequence import Sequence
from sqlalchemy import select, text
from twisted.logger import Logger
from twisted.plugin import IPlugin
from twisted.python.threadable import isInIOThread
from zope.interface import implementer

from pacscore.config.ini import MAIN_SECTION
from pacscore.config.secrets import isSecret, publicItems
from pacscore.converters.command import LUA_FILE, QUOTED_LUA_FILE
from pacscore.converters.context import ConverterContext, ConverterSyntaxError, Outcome
from pacscore.converters.elements import FIRST_PIXEL_TAG, assign, metaRefusal, textOf, vrOf, walkElements
from pacscore.converters.luaadmin import AdminFunctions, LuaAdminError
from pacscore.converters.luafiles import (LuaFileRefused, luaChunk, luaFilePath, readLuaFile, readLuaSource,
                                         unsafeAllowed, writeLuaFile, writeLuaText)
from pacscore.converters.luapixels import pixelCall
from pacscore.converters.luastrings import ENCODING
from pacscore.converters.saving import readObject, wholeObject
from pacscore.converters.script import parseScript
from pacscore.converters.servercommands import ServerCommandError
from pacscore.converters.uidmap import uidMapOf
from pacscore.converters.variables import checksum
from pacscore.db.drivers import redacted
from pacscore.dicom.identifiers import TEXT_VRS
from pacscore.dicom.textbytes import encodingsOf
from pacscore.hostport import splitHostPort
from pacscore.interfaces import IConverterCommand
from pacscore.storage.attributes import PIXEL_DATA
from pacscore.workers import standInIfSlow, standInWhileWaiting

DEFAULT_MAX_INSTRUCTIONS = 10_000_000
STORAGE = "Storage"  # Data.Storage: the device, not an element
MAX_MEMORY = 256 << 20  # bytes one thread's Lua state may hold: string.rep('x', 2^30) fails, the server lives
ITEM_SIZE = 1024  # what a sequence item a script adds counts towards MAX_MEMORY (LuaRuntime.charge)
ELEMENT_SIZE = 512  # what each element of a copied object or item counts, beside its value (_copiedSize)
MAX_CHUNKS = 256  # inline chunks a thread keeps compiled, the least recently used dropped (as _parsedScript)

_TRACEBACK = re.compile(r"(?:^|\n)stack traceback:")
_AE_TITLE = re.compile(r'[^\s;{}"]{1,16}')  # forward(ae), or host:port or [IPv6]:port as 'forward to' (splitHostPort)
_TAG = re.compile(r"\(?([0-9A-Fa-f]{4}),?([0-9A-Fa-f]{4})\)?")
_BINARY_VRS = frozenset({"OB", "OW", "OF", "OD", "OL", "OV", "UN", "AT"})
_INTEGER_VRS = frozenset({"US", "SS", "UL", "SL", "UV", "SV", "IS"})
_DS_LENGTH = 16  # characters a Decimal String holds
_FATE_OUTCOMES = (Outcome.DESTROY, Outcome.REJECT, Outcome.DEFER)
_NOTHING = object()  # an argument a script did not give (crc())
MAX_SLEEP = 60_000  # milliseconds the sleep(ms) calls of one run may last in all

# Run once in each Lua state: builds the sandboxes and the Data proxies.
# Receives the Python accessors; returns (compile, prepare, beginRun, sethook, endRun, wrapDataset, caselessIndex).
_SETUP = r"""
local getElement, setElement, sequenceItem, sequenceLength, kindOf, getVR, setVR, readInto, writeFrom, dumpTo,
      scriptOn, pixels, freeObject, copyObject, addItem = ...
local load, pcall, error, tostring, pairs, setmetatable, type = load, pcall, error, tostring, pairs, setmetatable, type
local pack, unpack, concat, select = table.pack, table.unpack, table.concat, select
local byte, utf8len = string.byte, utf8.len
local getupvalue, setupvalue, sethook, min = debug.getupvalue, debug.setupvalue, debug.sethook, math.min
local G = _G
G.python = nil

-- the Python handle behind each Data, object and sequence proxy
local handleOf = setmetatable({}, {__mode = "k"})
local wrapDataset, wrapSequence
-- a value from Python for Lua: data set and sequence handles become proxies
local function wrap(value)
  if type(value) == "userdata" then
    local kind = kindOf(value)
    if kind == "dataset" then return wrapDataset(value) end
    if kind == "sequence" then return wrapSequence(value) end
  end
  return value
end

-- a Python function for Lua: proxies given to it are their handles, handles
-- it returns proxies; its exceptions become Lua errors at the caller
-- 'level' levels up (2: whoever called the wrapper)
local function guard(f, level)
  return function(...)
    local args = pack(...)
    for i = 1, args.n do
      local handle = handleOf[args[i]]
      if handle ~= nil then args[i] = handle end
    end
    local results = pack(pcall(f, unpack(args, 1, args.n)))
    if not results[1] then error(tostring(results[2]), level) end
    for i = 2, results.n do results[i] = wrap(results[i]) end
    return unpack(results, 2, results.n)
  end
end
getElement, setElement = guard(getElement, 3), guard(setElement, 3)
sequenceItem, sequenceLength = guard(sequenceItem, 3), guard(sequenceLength, 3)
getVR, setVR = guard(getVR, 3), guard(setVR, 3)
-- tail called: level 2 is the script
readInto, writeFrom, dumpTo, scriptOn = guard(readInto, 2), guard(writeFrom, 2), guard(dumpTo, 2), guard(scriptOn, 2)
pixels, freeObject = guard(pixels, 2), guard(freeObject, 2)
copyObject, addItem = guard(copyObject, 2), guard(addItem, 2)

-- GetVR's value as Conquest gives it: a table of its bytes from index 0
local function byteTable(value)
  local bytes = {}
  for i = 1, #value do bytes[i - 1] = byte(value, i) end
  return bytes
end
-- SetVR's value for Python: text (UTF-8) as it is, other bytes as a byte table
local function rawValue(value)
  if type(value) == "string" and utf8len(value) == nil then return byteTable(value) end
  return value
end

-- Data.Seq[N] is item N (from 0), Data.Seq[#Data.Seq] a new item appended;
-- Data.Seq.Name is item 0's element, as in Conquest (set: item 0 is made
-- when the sequence is empty); Seq:Add(x) appends a copy of the object x
local function add(self, object) return addItem(self, object) end
wrapSequence = function(handle)
  local proxy = setmetatable({}, {
    __index = function(_, index)
      if index == "Add" then return add end
      local item = sequenceItem(handle, index, false)
      if item == nil or type(index) ~= "string" then return item end
      return (getElement(item, index))  -- no tail call: errors name the script's line
    end,
    __len = function() return sequenceLength(handle) end,
    __newindex = function(_, index, value)
      if type(index) ~= "string" then error("sequence items cannot be replaced, set their elements", 2) end
      setElement(sequenceItem(handle, index, true), index, value)
    end,
  })
  handleOf[proxy] = handle
  return proxy
end
-- an object's methods; 'self' is the proxy, which reaches Python as its handle
local methods = {
  Delete = function(self, key) setElement(self, key, nil) end,
  GetVR = function(self, group, element, asText)
    local value = getVR(self, group, element, asText and true or false)
    if type(value) == "string" and not asText then return byteTable(value) end
    return value
  end,
  SetVR = function(self, group, element, value) setVR(self, group, element, rawValue(value)) end,
  Read = function(self, path) return readInto(self, path) end,
  Write = function(self, path) return writeFrom(self, path) end,
  Dump = function(self, path) return dumpTo(self, path) end,
  Script = function(self, rule) return scriptOn(self, rule) end,
  free = function(self) return freeObject(self) end,
  Copy = function(self) return copyObject(self) end,
}
-- Conquest's pixel functions (luapixels): x:GetPixel(...) and getpixel([x,] ...), x Data when not given
local PIXELS = {GetPixel = "getpixel", SetPixel = "setpixel", GetRow = "getrow", SetRow = "setrow",
                GetColumn = "getcolumn", SetColumn = "setcolumn", GetImage = "getimage", SetImage = "setimage"}
local function pixelCall(name, object, ...)
  local args = pack(...)
  for i = 1, args.n do args[i] = rawValue(args[i]) end
  return pixels(name, object, unpack(args, 1, args.n))
end
for method, name in pairs(PIXELS) do
  methods[method] = function(self, ...) return pixelCall(name, self, ...) end
end
wrapDataset = function(handle)
  local proxy = setmetatable({}, {
    __index = function(_, key)
      if methods[key] then return methods[key] end
      return (getElement(handle, key))
    end,
    __newindex = function(_, key, value) setElement(handle, key, value) end,
  })
  handleOf[proxy] = handle
  return proxy
end
-- Conquest's function forms: getvr(object, group, element[, asText]) ...
local getvr, setvr = methods.GetVR, methods.SetVR

local function copy(t)
  local c = {}
  for k, v in pairs(t) do c[k] = v end
  return c
end
-- Lua's module search paths as the state began: a sandboxed script gets them
-- in a package table of its own (no loader: require stays out of reach), and
-- what an unsafe script sets in Lua's own lasts for its run (endRun), as the
-- state serves every script of its thread
local package = G.package
local packagePath, packageCPath = package.path, package.cpath
local running = false  -- an outermost run has begun (beginRun) and not ended
local function endRun()
  running = false
  package.path, package.cpath = packagePath, packageCPath
end

local SAFE = {"assert", "error", "ipairs", "next", "pairs", "pcall", "select", "tonumber",
              "tostring", "type", "xpcall"}
local function sandbox()
  local env = {string = copy(string), table = copy(table), math = copy(math), utf8 = copy(utf8),
               os = {time = os.time, date = os.date, clock = os.clock}, unpack = unpack,
               package = {path = packagePath, cpath = packageCPath}}
  for _, name in pairs(SAFE) do env[name] = G[name] end
  return env
end

-- Global's __index: a name whatever its case (Global.basedir, Global.BaseDir),
-- as Conquest finds them, from its metatable's values by lower-case name
local lower, getmetatable = string.lower, getmetatable
local function caselessIndex(t, k)
  if type(k) == "string" then return getmetatable(t).lowered[lower(k)] end
end

local function compile(source, name)
  return load(source, name, "t")
end

-- print's text: the arguments as strings, separated by tabs
local function printer(log)
  return function(...)
    local parts = {}
    for i = 1, select("#", ...) do parts[i] = tostring((select(i, ...))) end
    log(concat(parts, "\t"))
  end
end

-- what a run bound in a kept environment (an association's) that was not so
-- before: a function putting back what was, called when the run ends
local function unbinder(env, before)
  local changed = {}
  for k, v in pairs(env) do
    if before[k] ~= v then changed[k] = {before[k]} end
  end
  return function()
    for k, previous in pairs(changed) do env[k] = previous[1] end
  end
end

-- the run's environment: a new one, or the one 'kept' holds (an
-- association's, made by its first run, sandboxed or not as that run was)
local function prepare(chunk, unsafe, globals, dataset, log, functions, debug, kept)
  local mode = unsafe and "unsafe" or "sandboxed"
  local env = kept and kept[mode]
  if env == nil then
    env = unsafe and setmetatable({}, {__index = G}) or sandbox()
    env._G = env
    if kept then kept[mode] = env end
  end
  local before = kept and copy(env)
  for k, v in pairs(globals) do env[k] = v end
  for k, f in pairs(functions) do env[k] = guard(f, 2) end
  -- dofile(name): a Lua file as luafiles allows (any file when unsafe), run
  -- with the script's globals, as Conquest's scripts share one global table;
  -- a precompiled chunk only when unsafe, as loadstring takes one
  local chunkMode = unsafe and "bt" or "t"
  if functions.luasource ~= nil then
    local luasource = guard(functions.luasource, 3)
    env.dofile = function(name)
      if name == nil then error("dofile: a file name is wanted, not nil", 2) end
      local loaded, reason = load(luasource(name), "@" .. tostring(name), chunkMode, env)
      if loaded == nil then error(reason, 0) end
      return loaded()
    end
  end
  env.luasource = nil
  if unsafe then
    env.loadstring = function(source, name) return load(source, name, chunkMode, env) end
  end
  -- Global.Key = value: Conquest's put_param and read_ini (luaadmin); read back as set
  if functions.setglobal ~= nil and env.Global ~= nil then
    local setglobal = guard(functions.setglobal, 3)
    getmetatable(env.Global).__newindex = function(t, k, v)
      setglobal(k, tostring(v))
      if type(k) == "string" then getmetatable(t).lowered[lower(k)] = v end
    end
  end
  env.setglobal = nil
  if dataset ~= nil then env.Data = wrapDataset(dataset) end
  env.getvr, env.setvr = getvr, setvr
  if env.newdicomobject ~= nil then
    local newObject, newArray = env.newdicomobject, env.newdicomarray
    env.DicomObject = {new = function() return newObject() end, newarray = function() return newArray() end}
    -- readdicom(path) into Data or readdicom(object, path); writedicom likewise
    env.readdicom = function(object, path)
      if path == nil then object, path = env.Data, object end
      return object:Read(path)
    end
    env.writedicom = function(object, path)
      if path == nil then object, path = env.Data, object end
      return object:Write(path)
    end
    env.writeheader = function(object, path)
      if path == nil then object, path = env.Data, object end
      return object:Dump(path)
    end
    env.deletedicomobject = function(object) return freeObject(object) end
    for _, name in pairs(PIXELS) do
      env[name] = function(object, ...)
        if handleOf[object] == nil then return pixelCall(name, env.Data, object, ...) end
        return pixelCall(name, object, ...)
      end
    end
  end
  env.print = printer(log)
  if debug ~= nil then env.debuglog = printer(debug) end
  -- the chunk's _ENV; the one it had goes back when this run ends (a run of
  -- the same script within it must not leave the outer run its globals),
  -- but a kept one stays, as the functions the chunk defined keep it
  local _, outer = getupvalue(chunk, 1)
  setupvalue(chunk, 1, env)
  return outer, before and unbinder(env, before)
end

-- LuaMaxInstructions: a count hook adds up what the outermost run and the
-- runs it starts through script('lua ...') execute (they share its budget);
-- after the limit, error at every instruction: pcall cannot swallow it
local budget = {used = 0, limit = 0, step = 1}
local function stopHook()
  sethook(stopHook, "", 1)
  error("script stopped after " .. budget.limit .. " instructions (LuaMaxInstructions)", 2)
end
local function countHook()
  budget.used = budget.used + budget.step
  if budget.used >= budget.limit then
    sethook(stopHook, "", 1)
    error("script stopped after " .. budget.limit .. " instructions (LuaMaxInstructions)", 2)
  end
end
-- true for an outermost run (ended by sethook() with no hook: a C function,
-- which a stopping hook cannot interrupt, and endRun), false for one within
-- another, with or without a count hook
local function beginRun(limit)
  if running then return false end
  running = true
  if limit > 0 then
    budget.used, budget.limit, budget.step = 0, limit, min(limit, 1000)
    sethook(countHook, "", budget.step)
  end
  return true
end

-- Lua 5.1's names that Conquest's scripts use (Conquest runs Lua 5.1), in
-- the library tables sandboxes copy; loadstring only where load is (prepare)
G.table.getn = function(t) return #t end
G.math.mod = math.fmod
G.string.gfind = string.gmatch
G.unpack = unpack

-- rep of an empty string (and separator) loops in C as many times as asked,
-- where no count hook runs; the string table's own, as s:rep(...) finds it there
local rep = string.rep
G.string.rep = function(s, n, sep)
  if s == "" and (sep == nil or sep == "") then return "" end
  return rep(s, n, sep)
end

return compile, prepare, beginRun, sethook, endRun, wrapDataset, caselessIndex
"""


def describeLuaError(error):
    """The message of a ``lupa.LuaError`` without Lua's stack traceback;
    for an error value that is no text (``error({code=1})``, ``error()``)
    one saying so."""
    if isinstance(error, lupa.LuaMemoryError):
        return f"script stopped: it needed more than {MAX_MEMORY >> 20} MB of memory"
    message = _TRACEBACK.split(str(error), maxsplit=1)[0].strip()
    return message or "error() with no message (its value was nil or a table)"


class LuaApiError(ValueError):
    """A script used the API wrongly; becomes a Lua error at its line."""


class LuaScriptError(Exception):
    """A script file that cannot be read, or code that does not compile."""


class LuaAccessDenied(AttributeError):
    """A script tried to reach a Python attribute."""


def _denyAttributes(obj, name, isSetting):
    """lupa's attribute filter: Lua reaches no Python attribute at all."""
    raise LuaAccessDenied(f"Python attributes are not accessible from Lua (tried {name!r})")


def _shown(value):
    """A value a script gave, for a message: as Lua writes it, or its kind."""
    if value is None or isinstance(value, bool):
        return {None: "nil", True: "true", False: "false"}[value]
    if isinstance(value, (int, float)):
        return repr(value)
    return repr(value) if isinstance(value, str) else f"a {lupa.lua_type(value) or 'value'}"


def _tagOf(key):
    if isinstance(key, int) and not isinstance(key, bool) and 0 <= key <= 0xFFFFFFFF:
        return key
    if not isinstance(key, str):
        raise LuaApiError(f"unknown DICOM attribute {_shown(key)}: a keyword or gggg,eeee is wanted")
    match = _TAG.fullmatch(key.strip())
    tag = int(match.group(1) + match.group(2), 16) if match else tag_for_keyword(key)
    if tag is None:
        raise LuaApiError(f"unknown DICOM attribute {key!r}")
    return tag


def _checkedTag(tag):
    """``tag``, unless it is one no script sets (``metaRefusal``)."""
    refusal = metaRefusal(tag)
    if refusal:
        raise LuaApiError(refusal)
    return tag


class _DatasetHandle:
    """What a Lua ``Data`` proxy (or sequence item proxy) stands for."""

    def __init__(self, context, dataset):
        self.context = context
        self.dataset = dataset


class _ObjectContext:
    """What the handles of an object a script made stand in (newdicomobject,
    newdicomarray): the object belongs to no converter; ``dataset`` is its
    top level data set (None for an array); ``converterName`` that of the
    converter whose script made it, for the log."""

    def __init__(self, services, dataset, converterName):
        self.services = services
        self.dataset = dataset
        self.converterName = converterName
        self.changed = False


class _SequenceHandle:
    """What a Lua sequence proxy stands for; ``growing``: reading item N of
    N items appends one (False for an answer, such as dicomquery's, whose
    items past the last are nil: ipairs over it ends)."""

    def __init__(self, context, sequence, growing=True):
        self.context = context
        self.sequence = sequence
        self.growing = growing


def _kindOf(value):
    """What a Python value handed to Lua is: ``'dataset'``, ``'sequence'`` or None."""
    if isinstance(value, _DatasetHandle):
        return "dataset"
    return "sequence" if isinstance(value, _SequenceHandle) else None


def _isData(handle):
    """Whether ``handle`` is the converter's object itself (``Data``)."""
    return handle.dataset is handle.context.dataset and not isinstance(handle.context, _ObjectContext)


def _element(handle, tag):
    """Element ``tag`` of the handle's data set, or None; Data of an export
    converter, read up to its pixels, gets the pixel data and what follows
    from the stored file when a script first asks for one of them."""
    dataset, context = handle.dataset, handle.context
    if tag >= FIRST_PIXEL_TAG and tag not in dataset and _isData(handle) and not context.isImport \
            and context.filename and not context.pixelsRead:
        try:
            whole = readObject(context.filename)
        except (OSError, InvalidDicomError) as e:
            raise LuaApiError(f"the pixel data of {context.filename} cannot be read: {e}") from None
        context.pixelsRead = True
        for element in whole:
            if element.tag >= FIRST_PIXEL_TAG:
                dataset.add(element)
    return dataset.get(tag)


def _getElement(handle, key):
    """The text of an element, numbers' too as Conquest's lua.cpp pushes
    every value as a string (``Data.Rows == '512'``,
    ``tonumber(Data.Rows) > 100``), None when absent (nil, as in Conquest:
    ``Data.X or 'default'``), or a ``_SequenceHandle`` for a sequence;
    ``Data.Storage`` is the device (MAGn) the object is (to be) kept on,
    when known."""
    if key == STORAGE and _isData(handle):
        return handle.context.storageDevice
    try:
        tag = _tagOf(key)
    except LuaApiError:
        if isinstance(key, str) and key.isidentifier():  # x:Name() reads Name first
            raise LuaApiError(f"no method or DICOM attribute {key!r}") from None
        raise
    element = _element(handle, tag)
    if element is None:
        return None
    if element.VR == "SQ":
        return _SequenceHandle(handle.context, element.value)
    if element.VR in _BINARY_VRS:
        return bytes(element.value or b"")  # a bytearray: pixel data a setter wrote (luapixels)
    return textOf(element)


def _setElement(handle, key, value):
    """Set (or with nil delete) an element; an empty table makes an empty
    sequence (Conquest's ``Data.Seq = {}``); marks the context changed.
    ``Data.Storage = 'MAG1'`` in an import converter is ``storage MAG1``."""
    if key == STORAGE and _isData(handle):
        if not handle.context.isImport:
            raise LuaApiError("Data.Storage is set only in import converters")
        handle.context.storageDevice = None if value is None else str(value)
        return
    tag = _checkedTag(_tagOf(key))
    dataset = handle.dataset
    if value is None:
        if tag in dataset:
            del dataset[tag]
            handle.context.changed = True
        return
    if lupa.lua_type(value) == "table" and not len(value) and next(iter(value.keys()), None) is None:
        if vrOf(tag, dataset) != "SQ":
            raise LuaApiError(f"{key} is no sequence: an empty table makes an empty sequence")
        dataset.add_new(tag, "SQ", [])
        handle.context.changed = True
        return
    if isinstance(value, _SequenceHandle):
        if vrOf(tag, dataset) != "SQ":
            raise LuaApiError(f"{key} is no sequence: a sequence (newdicomarray()) is set only to one")
        _setSequence(handle, tag, value)
        return
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        kind = lupa.lua_type(value) or type(value).__name__
        raise LuaApiError(f"cannot set {key} to a {kind}: give a string, a number or a sequence")
    vr = vrOf(tag, dataset)
    if vr in _BINARY_VRS or vr == "SQ":
        raise LuaApiError(f"{key} has VR {vr}: Lua sets only text and numbers")
    if isinstance(value, float) and value.is_integer() and vr in _INTEGER_VRS:
        value = int(value)  # Lua's 512 / 2 is 256.0
    value = _numberText(value, vr) if isinstance(value, float) else str(value)
    LuaRuntime.running().charge(len(value))
    assign(dataset, tag, value, root=handle.context.dataset, where=handle.context.converterName)
    _assigned(handle, tag)


def _numberText(value, vr):
    """A fraction as Conquest's Lua writes it (%.14g); in a DS with fewer
    digits where that passes its 16 characters, in an FD or FL with all
    the digits of the double."""
    if vr in ("FD", "FL"):
        return repr(value)
    text = "%.14g" % value
    digits = 14
    while vr == "DS" and len(text) > _DS_LENGTH:
        digits -= 1
        text = "%.*g" % (digits, value)
    return text


def _assigned(handle, tag):
    """The script set element ``tag`` of ``handle``: the context changed,
    and ``tag`` is one it set when ``handle`` is Data."""
    handle.context.changed = True
    if _isData(handle):
        handle.context.assigned.add(tag)


def _sequenceItem(handle, index, create):
    """Item ``index`` (from 0), or None; item N of a sequence of N items is
    a new item appended, as in Conquest; for an element name item 0, made
    when the sequence is empty and ``create`` (else None)."""
    if isinstance(index, str):
        if not (handle.sequence or create):
            return None
        index = 0
    if isinstance(index, float) and index.is_integer():
        index = int(index)
    if not isinstance(index, int):
        raise LuaApiError(f"a sequence is indexed by item number (from 0) or element name, not {_shown(index)}")
    if index == len(handle.sequence) and handle.growing:
        LuaRuntime.running().charge(ITEM_SIZE)
        handle.sequence.append(Dataset())
        handle.context.changed = True
    if 0 <= index < len(handle.sequence):
        return _DatasetHandle(handle.context, handle.sequence[index])
    return None


def _sequenceLength(handle):
    return len(handle.sequence)


def _groupElement(group, element):
    """The tag of a GetVR/SetVR group and element number."""
    if not all(isinstance(number, (int, float)) and not isinstance(number, bool) for number in (group, element)):
        raise LuaApiError(f"a group and an element number are wanted, not {_shown(group)}, {_shown(element)}")
    return (int(group) & 0xFFFF) << 16 | (int(element) & 0xFFFF)


def _getVR(handle, group, element, asText=False):
    """Conquest's GetVR: the element's value as its bytes (little endian,
    as encoded in the object's character set), a ``_SequenceHandle`` for a
    sequence, None when absent; ``asText``, the value of a text VR
    (``TEXT_VRS``) as its text, as ``Data.X`` gives it (UTF-8 in Lua), so
    the two mix."""
    found = _element(handle, _groupElement(group, element))
    if found is None:
        return None
    if found.VR == "SQ":
        return _SequenceHandle(handle.context, found.value)
    if asText and found.VR in TEXT_VRS:
        return textOf(found)
    if isinstance(found.value, (bytes, bytearray)):  # a bytearray: pixel data a setter wrote (luapixels)
        return bytes(found.value)
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, True
    write_data_element(fp, found, encodingsOf(handle.context.dataset))
    return fp.getvalue()[8:]  # after the tag and length


def _setVR(handle, group, element, value):
    """Conquest's SetVR: the element (made with the VR the dictionary gives
    when absent) gets the bytes of ``value``, a Lua table of bytes from
    index 0 to its length (as GetVR gives) or a string; a string for a text
    VR (``TEXT_VRS``) is text, set as ``Data.X = value`` sets it (in the
    object's character set, or the object made ISO_IR 192 for text beyond
    ASCII: ``assign``); a sequence gets copies of the items of another
    one."""
    tag = _checkedTag(_groupElement(group, element))
    dataset = handle.dataset
    vr = vrOf(tag, dataset)
    if isinstance(value, _SequenceHandle):
        _setSequence(handle, tag, value)
        return
    if vr == "SQ":
        raise LuaApiError(f"({tag >> 16:04x},{tag & 0xFFFF:04x}) is a sequence: SetVR wants a sequence for it")
    elif isinstance(value, str) and vr in TEXT_VRS:
        LuaRuntime.running().charge(len(value))
        assign(dataset, tag, value, root=handle.context.dataset, where=handle.context.converterName)
    elif isinstance(value, str) or lupa.lua_type(value) == "table":
        raw = _bytesOf(value)
        LuaRuntime.running().charge(len(raw))
        dataset[tag] = convert_raw_data_element(RawDataElement(tag, vr, len(raw), raw, 0, False, True),
                                                encoding=encodingsOf(handle.context.dataset), ds=dataset)
    else:
        kind = lupa.lua_type(value) or type(value).__name__
        raise LuaApiError(f"SetVR wants a string, a table of bytes or a sequence, not a {kind}")
    _assigned(handle, tag)


def _copiedSize(dataset):
    """What a deep copy of ``dataset`` adds, as charged towards MAX_MEMORY:
    ITEM_SIZE for it and each item nested in it, ELEMENT_SIZE and the
    length of the value for each element, but not bytes values (pixel
    data: the copy shares them)."""
    size = ITEM_SIZE
    for _, element in walkElements(dataset):
        value = element.value
        if element.VR == "SQ":
            size += ELEMENT_SIZE + ITEM_SIZE * len(value or ())
        else:
            size += ELEMENT_SIZE + (0 if isinstance(value, bytes) else len(str(value)))
    return size


def _setSequence(handle, tag, sequence):
    """The sequence ``tag`` of the handle's data set gets copies of the
    items of ``sequence`` (a ``_SequenceHandle``)."""
    LuaRuntime.running().charge(sum(_copiedSize(item) for item in sequence.sequence))
    handle.dataset.add_new(tag, "SQ", [copy.deepcopy(item) for item in sequence.sequence])
    _assigned(handle, tag)


def _copyObject(handle):
    """Conquest's ``x:Copy()``: a new object, a deep copy of x (Data of an
    export converter: the whole stored object), changing nothing of x's."""
    if not isinstance(handle, _DatasetHandle):
        raise LuaApiError("Copy wants a DICOM object")
    dataset = handle.dataset
    if _isData(handle):
        try:
            dataset = wholeObject(handle.context)
        except (OSError, InvalidDicomError) as e:
            raise LuaApiError(f"Copy: {e}") from None
    LuaRuntime.running().charge(_copiedSize(dataset))
    objectContext = _ObjectContext(handle.context.services, copy.deepcopy(dataset), handle.context.converterName)
    return _DatasetHandle(objectContext, objectContext.dataset)


def _addItem(handle, item):
    """Conquest's ``array:Add(x)``: a copy of the object x appended to the
    sequence."""
    if not isinstance(handle, _SequenceHandle) or not isinstance(item, _DatasetHandle):
        raise LuaApiError("Add wants a sequence (newdicomarray()) and a DICOM object: array:Add(x)")
    LuaRuntime.running().charge(_copiedSize(item.dataset))
    handle.sequence.append(copy.deepcopy(item.dataset))
    handle.context.changed = True


def _encapsulated(dataset):
    element = dataset.get(PIXEL_DATA)
    return element is not None and element.is_undefined_length


def _readInto(handle, name):
    """``x:Read(name)``: the object in the file replaces x's elements; 1,
    or ``(None, reason)`` when the file is missing or unreadable.  The
    converter's own object (Data) takes only an uncompressed one, and only
    when its own pixel data are not compressed: it is stored in the
    transfer syntax it came in."""
    dataset, reason = readLuaFile(handle.context, name)
    if dataset is None:
        return None, reason
    ownObject = not isinstance(handle.context, _ObjectContext)
    if ownObject and (_encapsulated(dataset) or _encapsulated(handle.dataset)):
        return None, (f"{name}: compressed pixel data cannot replace the converter's object "
                      "(read it into newdicomobject())")
    handle.dataset.clear()
    handle.dataset.update(dataset)
    if ownObject:
        handle.context.pixelsRead = True  # Data has the file's pixels now, not the stored object's
    else:
        handle.dataset.file_meta = dataset.file_meta  # x:Write writes the syntax read
    handle.context.changed = True
    return 1


def _writeFrom(handle, name):
    """``x:Write(name)``: x as a Part-10 file (Data of an export converter:
    the whole stored object); true, or ``(None, reason)``."""
    dataset = handle.dataset
    if _isData(handle):
        try:
            dataset = wholeObject(handle.context)
        except (OSError, InvalidDicomError) as e:
            return None, f"cannot write {name}: {e}"
    reason = writeLuaFile(handle.context, dataset, name)
    return (None, reason) if reason else True


def _dumpTo(handle, name):
    """``x:Dump(name)``: x's elements as text (as ``dump_header`` shows
    them) in the file ``name``; true, or ``(None, reason)``."""
    reason = writeLuaText(handle.context, str(handle.dataset), name)
    return (None, reason) if reason else True


def _pixels(name, handle, *args):
    """Conquest's pixel function ``name`` on the object of ``handle`` (see
    ``luapixels``); a setter marks the object changed."""
    if not isinstance(handle, _DatasetHandle):
        raise LuaApiError(f"{name} wants a DICOM object")
    runtime = LuaRuntime.running()
    if name == "setimage":  # its string, or table of bytes
        args = [_bytesOf(arg) if isinstance(arg, str) or lupa.lua_type(arg) == "table" else arg for arg in args]
    element = _element(handle, PIXEL_DATA)
    results, copied = pixelCall(name, handle.dataset, element, args, runtime.lua.table_from)
    if copied is not None:
        runtime.charge(copied)
        _assigned(handle, PIXEL_DATA)
    return results


def _free(handle):
    """Conquest's ``deletedicomobject(x)`` (``x:free()``): empties an object
    or array the script made; Data and its items stay."""
    if isinstance(handle, _DatasetHandle) and isinstance(handle.context, _ObjectContext):
        handle.dataset.clear()
    elif isinstance(handle, _SequenceHandle) and isinstance(handle.context, _ObjectContext):
        handle.sequence.clear()


def _bytesOf(value):
    """The bytes of a Lua string (text) or of a table of bytes from index 0
    to its length (as GetVR gives them)."""
    if isinstance(value, str):
        return value.encode("utf-8")
    return bytes(_byteOf(value[index]) for index in range(len(value) + 1))


def _byteOf(value):
    """A byte of a SetVR table: Lua's integer value of ``value`` (0 when it has none)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return value & 0xFF if isinstance(value, int) and not isinstance(value, bool) else 0


def _scriptOn(handle, rule):
    """``x:Script(rule)``: what ``script(x, rule)`` of the script running in
    this thread gives (found so, not bound to a runtime: a state holding its
    runtime would live until a cyclic garbage collection)."""
    return LuaRuntime.running()._api.script(handle, rule)


class LuaRuntime:
    """One Lua state with the sandbox set up: a thread's (``forThread()``)
    or an association's (``forContext``), whose runs keep their globals
    (``persistent``) and take turns (lupa runtimes must not run in two
    threads at once)."""

    _perThread = threading.local()
    _sessionLock = threading.Lock()  # two workers storing an association's first objects make one runtime

    def __init__(self, persistent=False):
        self.lua = lupa.LuaRuntime(register_eval=False, register_builtins=False, max_memory=MAX_MEMORY,
                                   attribute_filter=_denyAttributes, unpack_returned_tuples=True, encoding=ENCODING)
        (self._compile, self._prepare, self._beginRun, self._sethook, self._endRun, self._wrapDataset,
         self._caselessIndex) = self.lua.execute(
            _SETUP, _getElement, _setElement, _sequenceItem, _sequenceLength, _kindOf, _getVR, _setVR, _readInto,
            _writeFrom, _dumpTo, _scriptOn, _pixels, _free, _copyObject, _addItem)
        self._setmetatable = self.lua.globals().setmetatable
        self._setupvalue = self.lua.globals().debug.setupvalue  # Lua's C function: no instruction counted
        self._gethook = self.lua.globals().debug.gethook
        self._collectGarbage = self.lua.globals().collectgarbage
        self._api = None  # the LuaApi of the script running (run()), for x:Script
        self._given = 0  # bytes the outermost run put into Python objects (charge)
        self._slept = 0  # milliseconds the outermost run slept (sleep)
        self._kept = self.lua.table() if persistent else None  # the environments that last (prepare)
        self._turn = threading.RLock()  # a run within a run (script('lua ...')) is in the same thread
        self._sources = {}  # source text -> compiled chunk, the most recently used last
        self._files = {}    # path -> ((mtime, size), compiled chunk)

    @classmethod
    def forThread(cls):
        """The calling thread's runtime, made on first use."""
        runtime = getattr(cls._perThread, "runtime", None)
        if runtime is None:
            runtime = cls._perThread.runtime = cls()
        return runtime

    @classmethod
    def forContext(cls, context):
        """The runtime of a script on ``context``: that of its association
        (``context.session``; made on first use and kept there, so that its
        globals last as long as the association, as Conquest's Lua state
        does), else the thread's."""
        if context.session is None:
            return cls.forThread()
        with cls._sessionLock:
            runtime = context.session.get("lua")
            if runtime is None:
                runtime = context.session["lua"] = cls(persistent=True)
        return runtime

    @classmethod
    def release(cls, session):
        """At the end of the association of ``session``: its runtime taken
        from it, and the garbage of its Lua state collected, which holds
        Python objects of its runs holding the runtime, so that it is freed
        at once, not by a cyclic garbage collection that does not see what
        the state holds."""
        with cls._sessionLock:
            runtime = session.pop("lua", None)
        if runtime is not None:
            with runtime.turn():
                runtime._collectGarbage()

    @classmethod
    def running(cls):
        """The runtime running a script in the calling thread (the thread's
        when none runs)."""
        return getattr(cls._perThread, "running", None) or cls.forThread()

    @contextlib.contextmanager
    def turn(self):
        """The calling thread's turn to use the runtime, waited for while
        another thread's run (of the same association) uses it: with a
        stand-in in the waiting worker's pool, as that run may wait for work
        of the pool (a server command)."""
        if not self._turn.acquire(blocking=False):
            with standInWhileWaiting():
                self._turn.acquire()
        try:
            yield
        finally:
            self._turn.release()

    def compile(self, source):
        """The compiled chunk of inline code (``lua`` in Lua's messages;
        the last MAX_CHUNKS used are kept); ``LuaScriptError`` for a
        syntax error."""
        chunk = self._sources.pop(source, None)
        if chunk is None:
            chunk = self._load(source, "=lua")
            if len(self._sources) >= MAX_CHUNKS:
                del self._sources[next(iter(self._sources))]
        self._sources[source] = chunk
        return chunk

    def compileFile(self, path, name):
        """The compiled chunk of a script file, compiled again when the file
        changes; ``name`` is the file in Lua's messages.  ``LuaScriptError``
        when unreadable or wrong."""
        try:
            status = os.stat(path)
            version = (status.st_mtime_ns, status.st_size)
            cached = self._files.get(path)
            if cached is not None and cached[0] == version:
                return cached[1]
            with open(path, "rb") as f:
                source = luaChunk(f.read())
        except OSError as e:
            raise LuaScriptError(f"cannot read {path}: {e}") from e
        chunk = self._load(source, "@" + name)
        self._files[path] = (version, chunk)
        return chunk

    def _load(self, source, name):
        result = self._compile(source, name)
        if isinstance(result, tuple):
            raise LuaScriptError(result[1])
        return result

    def table(self, rows):
        """A Lua array of arrays from a list of lists."""
        return self.lua.table_from(rows, recursive=True)

    def globalTable(self, configuration, unsafe):
        """``Global``: Conquest's ``BaseDir`` (the working folder, with a
        trailing slash), ``ConfigFile`` (dicom.ini) and ``RootConfig`` (its
        main section), then dicom.ini's main section (the first of keys equal
        but for case), its secrets left out for a sandboxed script (not
        ``unsafe``); names are found whatever their case, as in Conquest."""
        ini = getattr(configuration, "ini", None)
        items = [] if ini is None else ini.items()
        conquest = [("BaseDir", os.path.join(getattr(configuration, "workdir", None) or os.getcwd(), "")),
                    ("ConfigFile", getattr(configuration, "iniPath", None)), ("RootConfig", MAIN_SECTION)]
        byName = {}
        for key, value in conquest + (items if unsafe else publicItems(items)):
            if value is not None:
                byName.setdefault(key.lower(), value)
        table = self.lua.table_from({})  # empty: every name read through __index, every one set through __newindex
        lowered = self.lua.table_from(byName)
        # by Lua's C function: no instruction of the script's LuaMaxInstructions spent on it
        self._setmetatable(table, self.lua.table_from({"__index": self._caselessIndex, "lowered": lowered}))
        return table

    def run(self, chunk, api, maxInstructions=DEFAULT_MAX_INSTRUCTIONS):
        """Run a compiled chunk for ``api`` (a ``LuaApi``), sandboxed unless
        ``api.unsafe``, and give the script's first return value.  Errors,
        also those of the Python functions the script calls, raise
        ``lupa.LuaError``.  The caller holds the runtime's ``turn()``, which
        compiling the chunk takes too."""
        context = api.context
        # no object here (dgate --lua:, the [lua] scripts): an empty one, as Conquest's dummyddo
        handle = api.data = (api.newdicomobject() if context.dataset is None
                             else _DatasetHandle(context, context.dataset))
        globals = {"CallingAE": context.callingAE, "CalledAE": context.calledAE, "Filename": context.filename or "",
                   "Association": self.lua.table_from({"Calling": context.callingAE, "Called": context.calledAE}),
                   "Global": self.globalTable(context.services.configuration, api.unsafe)}
        if api.commandLine is not None:
            globals["command_line"] = api.commandLine
        if context.command is not None:
            globals["Command"] = self._wrapDataset(_DatasetHandle(context, context.command))
        functions = {name: getattr(api, name) for name in
                     ("forward", "script", "reject", "destroy", "dbquery", "genuid", "changeuid", "changeuidback",
                      "crc", "tickcount", "sleep", "newdicomobject", "newdicomarray", "servercommand", "dicomquery",
                      "dicommove", "get_amap", "dictionary", "luasource", "sql", "dicomdelete", "get_sqldef",
                      "heapinfo", "setglobal", "gpps")}
        outer, self._api = self._api, api  # script('lua ...') runs one within another
        outerRuntime, self._perThread.running = getattr(self._perThread, "running", None), self
        try:
            return self.execute(chunk, globals, functions, api.print, handle, api.unsafe, maxInstructions,
                                api.debuglog)
        finally:
            self._api, self._perThread.running = outer, outerRuntime

    def sleep(self, milliseconds):
        """Count ``milliseconds`` the script running is to sleep towards the
        MAX_SLEEP of its run (a script it runs through ``script('lua ...')``
        included): LuaApiError past it, nothing counted."""
        if self._slept + milliseconds > MAX_SLEEP:
            raise LuaApiError(f"sleep: a run sleeps at most {MAX_SLEEP} milliseconds in all: {self._slept:g} "
                              f"slept, {milliseconds:g} more refused")
        self._slept += milliseconds

    def charge(self, size):
        """Count ``size`` bytes the script running puts into a Python object
        (a DICOM object's value or item, a page's output) towards a second
        MAX_MEMORY, beside its Lua state's own: LuaApiError past it."""
        self._given += size
        if self._given > MAX_MEMORY:
            raise LuaApiError(f"script stopped: what it put into DICOM objects (or a page) passed "
                              f"{MAX_MEMORY >> 20} MB")

    def execute(self, chunk, globals, functions, printer, handle=None, unsafe=False,
                maxInstructions=DEFAULT_MAX_INSTRUCTIONS, debugPrinter=None):
        """Run a compiled chunk sandboxed (unless ``unsafe``) with the
        ``globals`` ({name: value}), the Python ``functions`` ({name: f},
        their exceptions Lua errors), ``print`` going to ``printer(text)``
        (``debuglog`` to ``debugPrinter``, when given) and ``Data`` the data
        set ``handle`` (None: none); the first value the script returns."""
        outer, unbind = self._prepare(chunk, unsafe, self.lua.table_from(globals), handle, printer,
                                      self.lua.table_from({name: _luaFunction(name, f) for name, f in functions.items()}),
                                      debugPrinter, self._kept)
        outermost = self._beginRun(maxInstructions)  # else run by a script through script('lua ...')
        if outermost:
            self._given = self._slept = 0
        try:
            result = chunk()
        finally:
            # the hook off first, so that unbind (Lua) runs past the limit of a run stopped by it; a
            # run within another gives the hook back after (the runs share the budget)
            hook = None if outermost else self._gethook()
            self._sethook()
            try:
                if unbind is None:
                    self._setupvalue(chunk, 1, outer)  # the same script, running around this run, keeps its globals
                else:  # a kept environment, which the functions the chunk defined keep: the run around this
                    unbind()  # one (of the same environment) gets its Data and functions back
            finally:
                if outermost:
                    self._endRun()
                elif isinstance(hook, tuple) and hook[0] is not None:
                    self._sethook(*hook)
        return result[0] if isinstance(result, tuple) else result


@functools.lru_cache(maxsize=None)
def _arguments(function):
    """The names of the arguments ``function`` cannot do without, and how
    many it takes (None: any number)."""
    parameters = inspect.signature(function).parameters.values()
    required = tuple(parameter.name for parameter in parameters
                     if parameter.default is parameter.empty and parameter.kind == parameter.POSITIONAL_OR_KEYWORD)
    if any(parameter.kind == parameter.VAR_POSITIONAL for parameter in parameters):
        return required, None
    return required, sum(parameter.kind == parameter.POSITIONAL_OR_KEYWORD for parameter in parameters)


def _luaFunction(name, method):
    """The Python ``method`` as the Lua function ``name``: an argument it
    needs (one without a default: a function taking nil says so by its
    default) that is nil or not given is a Lua error naming it, never the
    text 'None' (an AE title or a statement of that name); arguments past
    those it takes are ignored, as Lua's and Conquest's functions do."""
    required, most = _arguments(getattr(method, "__func__", method))
    if inspect.ismethod(method):  # self
        required, most = required[1:], None if most is None else most - 1

    def call(*args):
        for number, argument in enumerate(required):
            if number >= len(args) or args[number] is None:
                raise LuaApiError(f"{name}: argument {number + 1} ({argument}) is nil")
        return method(*args[:most])
    return call


def iniValue(ini, section, key, default, unsafe):
    """Conquest's ``gpps(section, key[, default])``: the dicom.ini value, or
    ``default``; for a sandboxed script (not ``unsafe``) a secret is absent
    and a URL's password hidden."""
    value = None if ini is None else ini.get(str(key), None, str(section))
    if value is None or (not unsafe and isSecret(str(key))):
        return default
    return value if unsafe else redacted(value)


def _text(value):
    """A script's optional text argument: '' for nil."""
    return "" if value is None else str(value)


def _datasetOf(value, name):
    """The data set of an object a script gives a function."""
    if not isinstance(value, _DatasetHandle):
        raise LuaApiError(f"{name} wants a DICOM object (newdicomobject()) for its query")
    return value.dataset


class LuaApi(AdminFunctions):
    """The Python side of what one run of a script may call; ``registry``
    and ``kind`` are those of the converter line (for ``script()``),
    ``unsafe`` whether it runs unsandboxed (``LuaAllowUnsafe = 1``)."""

    def __init__(self, context, runtime, registry, kind, commandLine=None, unsafe=False, printer=None):
        self.context = context
        self.printer = printer  # where print goes (dgate --lua:); None: the server log
        self.runtime = runtime
        self.registry = registry
        self.kind = kind
        self.commandLine = commandLine  # Conquest's command_line global; None: not set
        self.unsafe = unsafe
        self.fate = None  # the last destroy/reject/defer of a script() call
        self.data = None  # the handle of Data, set by LuaRuntime.run

    def print(self, text):
        if self.printer is None:
            self.context.log.info("{converter}: {text}", converter=self.context.converterName, text=text)
        else:
            self.printer(text)

    def debuglog(self, text):
        """Conquest's ``debuglog``: ``print`` to the debug log (``debuglog_on``)."""
        self.context.log.debug("{converter}: {text}", converter=self.context.converterName, text=text)

    def forward(self, ae):
        """``forward image to AE`` (AE, or ``host:port`` as ``forward to``
        takes): allowed in import and export converters (in these it is
        ``forward to AE``)."""
        ae = str(ae).strip()
        if "forward" not in self.registry.commands:
            raise LuaApiError("forward: there is no 'forward' command")
        if not (_AE_TITLE.fullmatch(ae) or splitHostPort(ae)):
            raise LuaApiError(f"forward: {ae!r} is not an AE title nor host:port")
        return self.script("forward image to " + ae)

    def script(self, rule, objectRule=None):
        """Conquest's ``script(rule)``: run a converter line on the context;
        ``script(x, rule)`` (``x:Script(rule)``): on the object x, whose
        destroy or reject is no fate of Data's.  The name of its outcome."""
        if isinstance(rule, _DatasetHandle) and not _isData(rule):
            context = ConverterContext(self.context.kind, rule.dataset, self.context.callingAE,
                                       self.context.calledAE, services=self.context.services,
                                       converterName=self.context.converterName, session=self.context.session,
                                       fetchedFrom=self.context.fetchedFrom,
                                       fetchedObject=self.context.fetchedObject or self.context.dataset)
            context.stored = False  # forward sends x as it is, not a stored object with its UIDs
            outcome = self._runRule(objectRule, context)
            rule.context.changed = rule.context.changed or context.changed
            return outcome.value
        if isinstance(rule, _DatasetHandle):
            rule = objectRule
        if self.context.dataset is None:  # Data is an object as x (Conquest's dummyddo): Data:Script(rule)
            return self.script(self.data, rule)
        outcome = self._runRule(rule, self.context)
        if outcome in _FATE_OUTCOMES:
            self.fate = outcome
        return outcome.value

    def reject(self):
        """Conquest's ``reject()``: the object (the ``command`` script's
        request) is refused, as a script returning ``'reject'`` refuses it,
        unless it returns another outcome; the script goes on."""
        self.fate = Outcome.REJECT

    def destroy(self):
        """Conquest's ``destroy()``: as ``reject()``, for ``'destroy'``."""
        self.fate = Outcome.DESTROY

    def _runRule(self, rule, context):
        """Run ``rule`` on ``context``, sandboxed (no command that
        reachesOutside) unless the script is unsafe."""
        key = f"{self.context.converterName} (Lua script())"
        outer, context.sandboxed = context.sandboxed, context.sandboxed or not self.unsafe
        try:
            return _parsedScript(str(rule), key, self.registry, self.kind).run(context)
        finally:
            context.sandboxed = outer

    def get_amap(self, index=None):
        """Conquest's ``get_amap(n)``: acrnema.map's entry n (from 0) as AE,
        host, port and compression; nothing past the last, nor for nil."""
        nodes = self.context.services.configuration.acrNemaMap.nodes
        if not isinstance(index, (int, float)) or isinstance(index, bool) or not 0 <= index < len(nodes):
            return ()
        node = nodes[int(index)]
        return node.ae, node.host, node.port, node.compression

    def dictionary(self, group, element=None):
        """Conquest's ``dictionary(group, element)``: the name of the tag;
        ``dictionary(name)``: its group and element; nothing when the
        dictionary does not know it."""
        if element is None:
            tag = tag_for_keyword(str(group))
            return () if tag is None else (tag >> 16, tag & 0xFFFF)
        return keyword_for_tag(_groupElement(group, element)) or ()

    def gpps(self, section, key, default=""):
        """Conquest's ``gpps``, as web pages have it (``iniValue``)."""
        return iniValue(getattr(self.context.services.configuration, "ini", None), section, key, default,
                        self.unsafe)

    def genuid(self):
        """A new UID (under UIDPrefix)."""
        return uidMapOf(self.context.services).newUID()

    def changeuid(self, uid=None, to=None, stage=None, modType=None):
        """Conquest's ``changeuid(uid[, to[, stage[, type]]])``: the new UID
        standing for ``uid`` (for the target ``stage``, when given: another
        stage gets another), made and kept in UIDMODS the first time, or
        ``to``, any text (a pseudonym too, which other originals may have
        as well), unless ``uid`` was given another before (Conquest's
        ChangeUIDTo), recorded with the type ``type``; an error when ``to``
        is empty or too long; nil for nil, as in Conquest.  ``changeuid(uid)``
        gives what was recorded, a pseudonym too, which is then not the UID
        ``newuids`` writes for ``uid`` (``UIDMap.uidFor``)."""
        if uid is None:
            return None
        try:
            return uidMapOf(self.context.services).newFor(str(uid), _text(modType), _text(stage),
                                                          None if to is None else str(to))
        except ValueError as e:
            raise LuaApiError(f"changeuid: {e}") from None

    def changeuidback(self, uid=None, stage=None, modType=None):
        """Conquest's ``changeuidback(new[, stage[, type]])``: the original
        UID ``new`` replaced (for ``stage``, recorded with ``type``, when
        given), the first recorded when it stands for several; nil when
        none (also for nil)."""
        return None if uid is None else uidMapOf(self.context.services).oldFor(str(uid), _text(stage),
                                                                               _text(modType))

    def tickcount(self):
        """Conquest's ``tickcount()``: milliseconds from an arbitrary start
        (a monotonic clock), to time what a script does."""
        return int(time.monotonic() * 1000)

    def sleep(self, milliseconds):
        """Conquest's ``sleep(ms)``: the script waits (in its worker, with a
        stand-in for its pool when it lasts); at most MAX_SLEEP, all the
        calls of a run together, and never in the reactor's thread."""
        if not isinstance(milliseconds, (int, float)) or isinstance(milliseconds, bool) \
                or not 0 <= milliseconds <= MAX_SLEEP:
            raise LuaApiError(f"sleep: 0 to {MAX_SLEEP} milliseconds are wanted, not {_shown(milliseconds)}")
        if isInIOThread():
            raise LuaApiError("sleep: a script run by the server's main thread does not sleep")
        LuaRuntime.running().sleep(milliseconds)
        with standInIfSlow():
            time.sleep(milliseconds / 1000)

    def crc(self, text=_NOTHING):
        """Conquest's checksum of ``text`` (%A): its CRC32, unsigned decimal;
        nil's is the empty text's, as Conquest's (an absent element in an
        anonymiser), and ``crc()`` is nil."""
        if text is _NOTHING:
            return None
        return checksum(_text(text))

    def luasource(self, name):
        """The bytes of the Lua file ``name``, for ``dofile`` (``luaChunk``)."""
        return readLuaSource(self.context, name)

    def newdicomobject(self):
        """An empty object (Conquest's ``newdicomobject()``, ``DicomObject:new()``)."""
        objectContext = _ObjectContext(self.context.services, Dataset(), self.context.converterName)
        return _DatasetHandle(objectContext, objectContext.dataset)

    def newdicomarray(self):
        """An empty sequence of objects (``newdicomarray()``, ``DicomObject:newarray()``)."""
        return _SequenceHandle(_ObjectContext(self.context.services, None, self.context.converterName), Sequence())

    def _serverCommands(self, name):
        commands = self.context.services.serverCommands
        if commands is None:
            raise LuaApiError(f"{name}: there are no server commands here")
        return commands

    def servercommand(self, text=None):
        """The output of a control command (``name:arguments``; nil when it
        has none, as in Conquest), or nil and the reason it failed; nothing
        for nil, as Conquest's."""
        if text is None:
            return ()
        commands = self._serverCommands("servercommand")
        try:
            return commands.fromThread(str(text), sandboxed=not self.unsafe) or None
        except ServerCommandError as e:
            return None, str(e)

    def dicomquery(self, ae, level, query):
        """Conquest's dicomquery: the matches of a C-FIND on ``ae`` at
        ``level`` with the keys of the object ``query``, as an array of
        objects; when it failed, an empty array and the reason."""
        commands = self._serverCommands("dicomquery")
        identifier = _datasetOf(query, "dicomquery")
        matches = _SequenceHandle(_ObjectContext(self.context.services, None, self.context.converterName), Sequence(),
                                  growing=False)
        try:
            matches.sequence.extend(commands.find(str(ae), str(level), identifier))
        except ServerCommandError as e:
            return matches, str(e)
        return matches

    def dicommove(self, source, destination, query, patientRoot=0):
        """Conquest's dicommove: a C-MOVE on ``source`` to ``destination``
        of what the object ``query`` names (Patient Root when
        ``patientRoot`` is not 0), waited for; true, or nil and the reason."""
        commands = self._serverCommands("dicommove")
        identifier = _datasetOf(query, "dicommove")
        try:
            commands.move(str(source), str(destination), identifier, bool(patientRoot))
        except ServerCommandError as e:
            return None, str(e)
        return True

    def dbquery(self, tableName, fields, where=None, order=None):
        """Rows of a SELECT on one index table, as a Lua array of arrays of strings."""
        index = self.context.services.index
        if index is None:
            raise LuaApiError("dbquery: there is no index database")
        return self.runtime.table(selectRows(index, tableName, fields, where, order))


def _operatorSQL(index, clause, what):
    """An operator's where or order clause as SQL text: the index's names
    quoted as the database stores them (PostgreSQL folds unquoted ones);
    LuaApiError for ``;`` or comments."""
    if any(mark in clause for mark in (";", "--", "/*")):
        raise LuaApiError(f"dbquery: the {what} may not hold ';' or comments")
    return text(index.quoteNames(clause).replace(":", "\\:"))


def selectRows(index, tableName, fields, where=None, order=None):
    """In the calling thread: the rows (lists of strings) of ``SELECT fields
    FROM tableName [WHERE where] [ORDER BY order]`` on one index table, for
    a Lua script's ``dbquery`` (Conquest's four arguments); LuaApiError for
    another table, an unknown column or a clause with ``;`` or comments."""
    tables = {table.name.lower(): table for table in index.tables}
    table = tables.get(str(tableName).lower())
    if table is None:
        raise LuaApiError(f"dbquery: {tableName!r} is not one of the index tables "
                          f"({', '.join(t.name for t in index.tables)})")
    columns = {column.name.lower(): column for column in table.columns}
    names = [name.strip() for name in str(fields).split(",")]
    found = [columns.get(index.quoteNames.storedName(name).lower()) for name in names]
    unknown = [name for name, column in zip(names, found) if column is None]
    if unknown:
        raise LuaApiError(f"dbquery: {table.name} has no column {', '.join(map(repr, unknown))}")
    query = select(*found)
    if where is not None and str(where).strip():
        query = query.where(_operatorSQL(index, f"({where})", "where clause"))
    if order is not None and str(order).strip():
        query = query.order_by(_operatorSQL(index, str(order), "sort order"))
    with index.engine.connect() as connection:
        rows = connection.execute(query).all()
    return [["" if v is None else str(v) for v in row] for row in rows]


_parsedScript = functools.lru_cache(maxsize=256)(parseScript)


def _outcomeOf(value, fate):
    """The Outcome of a script's return value (nil: go on, or what a
    script() call decided)."""
    if value is None:
        return fate or Outcome.CONTINUE
    try:
        return Outcome(str(value).strip().lower())
    except ValueError:
        raise LuaApiError(f"the script returned {value!r}, not one of "
                          f"{', '.join(o.value for o in Outcome)}") from None


class LuaArguments(NamedTuple):
    """What the Lua commands' ``parse`` gives: the code (or, when ``file``,
    the file name), the registry and kind of the line, for ``script()``,
    the text given in ``x.lua(text)`` (still to be %-expanded; None
    without), and whether statements follow it on its line (which a
    failure skips)."""

    code: str
    registry: object
    kind: str
    commandLine: str = None
    file: bool = False
    followed: bool = False


class LuaFailure(Exception):
    """A script that failed; the message says why (Lua's, without its traceback)."""


class _LuaCommandBase:
    """What both Lua commands share: settings, running and error handling."""

    scope = "IE"
    condition = False
    log = Logger()

    def chunk(self, runtime, arguments, context):
        """The compiled chunk to run: the code, or the file it names (read
        again when it changes), relative to the folder of dicom.ini (the
        current folder without a configuration); for a sandboxed script's
        ``script()`` only a file its ``dofile`` may run (``luaFilePath``)."""
        if not arguments.file:
            return runtime.compile(arguments.code)
        path = arguments.code
        if context.sandboxed:
            return runtime.compileFile(luaFilePath(context, path), path)
        folder = getattr(context.services.configuration, "configDir", None) or os.getcwd()
        return runtime.compileFile(os.path.join(folder, path), path)

    @staticmethod
    def inline(source, where):
        """The LuaArguments of inline code ``source``, compiled now so that
        a syntax error stops the line's parsing (ConverterSyntaxError)."""
        try:
            LuaRuntime.forThread().compile(source)
        except LuaScriptError as e:
            raise ConverterSyntaxError(f"{where}: {e}") from None
        return LuaArguments(source, where.registry, where.kind, followed=where.followed)

    def execute(self, arguments, context, commandLine=None, printer=None):
        """Run the script on ``context`` (``command_line`` the text
        ``commandLine`` unless None, ``print`` to ``printer(text)`` when
        given): the Outcome it asks for, or LuaFailure."""
        ini = getattr(context.services.configuration, "ini", None)
        limit = DEFAULT_MAX_INSTRUCTIONS if ini is None else ini.getint(
            "LuaMaxInstructions", DEFAULT_MAX_INSTRUCTIONS)
        runtime = LuaRuntime.forContext(context)
        api = LuaApi(context, runtime, arguments.registry, arguments.kind, commandLine, unsafeAllowed(ini), printer)
        try:
            with runtime.turn():  # compiling uses the runtime too, and run expects it taken
                result = runtime.run(self.chunk(runtime, arguments, context), api, limit)
            return _outcomeOf(result, api.fate)
        except lupa.LuaError as e:
            raise LuaFailure(describeLuaError(e)) from e
        except (LuaScriptError, LuaApiError, LuaAccessDenied, LuaFileRefused, LuaAdminError) as e:
            raise LuaFailure(str(e)) from e

    def run(self, arguments, context):
        """The Outcome of the script on ``context``; a failure is logged,
        said in ``context.failure`` (a modify command fails on it) and
        gives STOP: unlike Conquest, which goes on with the line, the
        rest of it is skipped (its forward would send what the script
        failed to change), which the log line says when statements follow
        the script on its line (``arguments.followed``)."""
        commandLine = None if arguments.commandLine is None else context.expand(arguments.commandLine)
        skipped = "; the rest of the line is skipped" if arguments.followed else ""
        try:
            outcome = self.execute(arguments, context, commandLine)
            if outcome is Outcome.DEFER and context.isImport:
                self.log.warn("{converter}: the Lua script asked to 'defer', which only export converters do; "
                              "the line stops here", converter=context.converterName)
                return Outcome.STOP
            return outcome
        except LuaFailure as e:
            context.failure = str(e)
            self.log.error("{converter}: Lua script failed: {luaError}{skipped}", converter=context.converterName,
                           luaError=context.failure, skipped=skipped)
        except Exception as e:
            context.failure = repr(e)
            self.log.failure("{converter}: Lua script failed{skipped}", converter=context.converterName,
                             skipped=skipped)
        return Outcome.STOP


@implementer(IPlugin, IConverterCommand)
class LuaInlineCommand(_LuaCommandBase):
    """``lua "code"``: the code in double quotes (use single quotes inside)."""

    name = "lua"

    def parse(self, arguments, where):
        if len(arguments) < 2 or arguments[0] != '"' or arguments[-1] != '"':
            raise ConverterSyntaxError(f'{where}: lua wants its code in double quotes: lua "..."')
        return self.inline(arguments[1:-1], where)


@implementer(IPlugin, IConverterCommand)
class LuaColonCommand(_LuaCommandBase):
    """``lua:code``: as in Conquest the rest of the line, semicolons and
    all, is Lua code (``lua:Data.PatientID='X'; Data.PatientName='Y'``).
    pacs's own ``lua:path``, a script file, is taken when the rest of
    the line is only a file name ending in ``.lua``, no spaces, quotes,
    ``=``, parentheses or braces in it (``LUA_FILE``), or such a name in
    double quotes, which may hold any of them but '"' (``QUOTED_LUA_FILE``;
    as Lua code either is a syntax error, but for a call t.lua(x));
    ``lua:path(text)`` (and a statement that is just such a file name,
    ``path`` or ``path(text)``, as Conquest runs them) sets the global
    ``command_line`` to the %-expanded text.  Run by a sandboxed script's
    ``script()``, the file is one its ``dofile`` may run
    (``luaFilePath``)."""

    name = "lua:"

    def parse(self, arguments, where):
        text = arguments.strip()
        if not text:
            raise ConverterSyntaxError(f"{where}: lua: wants Lua code or a script file, "
                                       f"e.g. lua:Data.PatientID='X' or lua:script.lua")
        match = LUA_FILE.fullmatch(text) or QUOTED_LUA_FILE.fullmatch(text)
        if match is None:
            return self.inline(text, where)
        return self.file(match.group("path"), match.group("text"), where)

    @staticmethod
    def file(path, text, where):
        """The LuaArguments running the Lua file ``path`` with the text
        ``text`` (None for none) on the line at ``where``: a name already
        known to be a file (``process with x.lua text``) is not parsed
        again as ``lua:``, where it could be taken for code."""
        return LuaArguments(path, where.registry, where.kind, text, file=True, followed=where.followed)


def runProcessScript(services, name, commandLine):
    """In a worker thread: ``process ... by name.lua text`` as Conquest runs
    it: the script file (found as ``lua:`` finds it) with ``Data`` empty and
    ``command_line`` the text; LuaFailure when it fails."""
    context = ConverterContext("export", None, services=services, converterName=f"process by {name}")
    LuaColonCommand().execute(LuaArguments(name, services.commands, "export", file=True), context, commandLine)
