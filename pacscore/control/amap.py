"""Control commands on acrnema.map, the known DICOM nodes (manual appendix 6):
``get_amap``, ``get_amaps``, ``put_amap``, ``delete_amap``, ``write_amap``,
``read_amap``.

They edit the server's own ``AcrNemaMap``, the object C-MOVE and the
export forwarder look destinations up in, so a node put here can be moved
to at once.  As in Conquest, ``put_amap`` and ``delete_amap`` change the
map in memory only; ``write_amap`` saves it (header comments kept) and
``read_amap`` reads the file again.  An entry is printed with ``fmt``
taking AE, host, port and compression, again as often as it asks (default
``%-17s %-30s %-10s %s``);
an index past the last entry prints nothing.  After ``put_amap``,
``delete_amap`` and ``read_amap`` a ``[DICOMTLSNodes]`` line whose AE the
map no longer has an entry for is warned of (``Configuration.warnOfMistypedTLSNodes``).  ``get_amaps`` lists the
servers, as Conquest's does: the entries without a wildcard (``*``, ``?``)
in their AE.
"""

from pacscore.config.acrnema import Node
from pacscore.control.arguments import ControlCommand, fields, number
from pacscore.control.configfiles import reload, save
from pacscore.control.context import CommandError, checkUTF8, formatted

NODE_FORMAT = "%-17s %-30s %-10s %s"


def nodeLine(node, fmt=""):
    """One acrnema.map entry as ``get_amap`` prints it."""
    return formatted(fmt or NODE_FORMAT, node.ae, node.host, node.port, node.compression, repeat=True)


class GetAmap(ControlCommand):
    name = "get_amap"
    usage = "--get_amap:index,fmt  List any entry from ACRNEMA.MAP"
    readOnly = True

    def run(self, arguments, context):
        index, fmt = fields(arguments, 2)
        nodes = context.archive.configuration.acrNemaMap.nodes
        position = number(index, "index")
        return nodeLine(nodes[position], fmt) if position < len(nodes) else ""


class GetAmaps(ControlCommand):
    name = "get_amaps"
    usage = "--get_amaps:fmt  List all non-wildcard entries from ACRNEMA.MAP"
    readOnly = True

    def run(self, arguments, context):
        return "\n".join(nodeLine(node, arguments) for node in context.archive.configuration.acrNemaMap.nodes
                         if not any(wildcard in node.ae for wildcard in "*?"))


class PutAmap(ControlCommand):
    """Replaces entry ``index``, or adds one after the last when ``index``
    is the number of entries or more (Conquest's scripts put 99).  Lookups
    take the first match, so an AE that an earlier wildcard entry (``S*``)
    matches must replace an entry."""

    name = "put_amap"
    usage = "--put_amap:index,AE,ip,port,compression  Write entry in memory for ACRNEMA.MAP"

    def run(self, arguments, context):
        index, ae, host, port, compression = fields(arguments, 5)
        if not (ae and host and port):
            raise CommandError(f"usage: {self.usage}")
        checkUTF8(ae, host, port, compression)
        node = Node(ae, host, port, compression.strip() or "un")
        configuration = context.archive.configuration
        acrNemaMap = configuration.acrNemaMap
        try:
            acrNemaMap.put(min(number(index, "index"), len(acrNemaMap.nodes)), node)
        except (IndexError, ValueError) as e:
            raise CommandError(str(e)) from e
        configuration.warnOfMistypedTLSNodes()
        return ""


class DeleteAmap(ControlCommand):
    name = "delete_amap"
    usage = "--delete_amap:index  Delete entry in memory for ACRNEMA.MAP"

    def run(self, arguments, context):
        configuration = context.archive.configuration
        try:
            configuration.acrNemaMap.delete(number(arguments, "index"))
        except IndexError as e:
            raise CommandError(str(e)) from e
        configuration.warnOfMistypedTLSNodes()
        return ""


class WriteAmap(ControlCommand):
    name = "write_amap"
    usage = "--write_amap:  Write ACRNEMA.MAP from memory to disk"

    def run(self, arguments, context):
        return save(context.archive, context.archive.configuration.acrNemaMap).addCallback(lambda _: "")


class ReadAmap(ControlCommand):
    name = "read_amap"
    usage = "--read_amap:  Re-read ACRNEMA.MAP from disk to memory"

    def run(self, arguments, context):
        configuration = context.archive.configuration

        def read(nodes):
            configuration.warnOfMistypedTLSNodes()
            return f"{len(nodes.nodes)} entries read from {nodes.path}"

        return reload(context.archive, configuration.acrNemaMap).addCallback(read)
