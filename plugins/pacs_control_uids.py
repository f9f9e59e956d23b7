"""The built-in control commands on UIDs: genuid, changeuid, changeuidback
and checksum (manual appendix 6, test options).

Only instances live here; ``getPlugins(IControlCommand, plugins)`` finds
them as it finds installed ones.
"""

from pacscore.control import uids

genUid = uids.GenUid()
changeUid = uids.ChangeUid()
changeUidBack = uids.ChangeUidBack()
checksum = uids.Checksum()
