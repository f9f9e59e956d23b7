"""The segment IDs of HL7 v2 (2.1 to 2.9, withdrawn ones included), and
``isSegmentId``, which tells one of them or a Z-segment's (``ZDS``, a
site's own) from three other capitals: ``CVA`` or ``NKA`` starting a line
a RIS user typed into a free-text field."""

import re

SEGMENT_IDS = frozenset(b"""
    ABS ACC ADD ADJ AFF AIG AIL AIP AIS AL1 APR ARQ ARV AUT
    BHS BLC BLG BPO BPX BTS BTX BUI
    CDM CER CM0 CM1 CM2 CNS CON CSP CSR CSS CTD CTI CTR
    DB1 DEV DG1 DMI DON DPS DRG DSC DSP DST
    ECD ECR EDU EQL EQP EQU ERQ ERR EVN
    FAC FHS FT1 FTS
    GOL GP1 GP2 GSC GSP GSR GT1
    IAM IAR IIM ILT IN1 IN2 IN3 INV IPC IPR ISD ITM IVC IVT
    LAN LCC LCH LDP LOC LRL
    MFA MFE MFI MRG MSA MSH
    NCK NDS NK1 NPU NSC NST NTE
    OBR OBX ODS ODT OH1 OH2 OH3 OH4 OM1 OM2 OM3 OM4 OM5 OM6 OM7 ORC ORG ORO OVR
    PAC PCE PCR PD1 PDA PDC PEO PES PID PKG PM1 PMT PR1 PRA PRB PRC PRD PRT
    PSG PSH PSL PSS PTH PV1 PV2 PYE
    QAK QID QPD QRD QRF QRI
    RCP RDF RDT REL RF1 RFI RGS RMI ROL RQ1 RQD RX1 RXA RXC RXD RXE RXG RXO RXR RXV
    SAC SCD SCH SCP SDD SFT SGH SGT SHP SID SLT SPM SPR STF STZ
    TCC TCD TQ1 TQ2 TXA
    UAC UB1 UB2 URD URS
    VAR VND VTQ
""".split())
_Z_SEGMENT = re.compile(rb"Z[A-Z0-9]{2}")


def isSegmentId(text):
    """Whether ``text`` (bytes) is a segment ID of HL7 v2 or a Z-segment's."""
    return text in SEGMENT_IDS or _Z_SEGMENT.fullmatch(text) is not None
