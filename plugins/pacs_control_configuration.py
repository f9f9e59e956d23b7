"""The built-in control commands on the configuration files: dicom.ini,
acrnema.map, dgatesop.lst, and the dicom.sql and dictionary listings
(manual appendix 6, configuration options).

Only instances live here; ``getPlugins(IControlCommand, plugins)`` finds
them as it finds installed ones.
"""

from pacscore.control import acceptance, amap, configuration, definitions

getParam = configuration.GetParam()
getIniParam = configuration.GetParam(
    "get_ini_param", "--get_ini_param:name,fmt  Read any parameter from DICOM.INI")
getIniNum = configuration.GetIniNum()
getIni = configuration.GetIni()
putParam = configuration.PutParam()
deleteParam = configuration.DeleteParam()
readIni = configuration.ReadIni()

getAmap = amap.GetAmap()
getAmaps = amap.GetAmaps()
putAmap = amap.PutAmap()
deleteAmap = amap.DeleteAmap()
writeAmap = amap.WriteAmap()
readAmap = amap.ReadAmap()

getSop = acceptance.GetEntry("sop")
putSop = acceptance.PutEntry("sop")
deleteSop = acceptance.DeleteEntry("sop")
getTransfer = acceptance.GetEntry("transfer")
putTransfer = acceptance.PutEntry("transfer")
deleteTransfer = acceptance.DeleteEntry("transfer")
getApplication = acceptance.GetEntry("application")
putApplication = acceptance.PutEntry("application")
deleteApplication = acceptance.DeleteEntry("application")
getLocalAE = acceptance.GetEntry("localae")
putLocalAE = acceptance.PutEntry("localae")
deleteLocalAE = acceptance.DeleteEntry("localae")
getRemoteAE = acceptance.GetEntry("remoteae")
putRemoteAE = acceptance.PutEntry("remoteae")
deleteRemoteAE = acceptance.DeleteEntry("remoteae")

getSqlDef = definitions.GetSqlDef()
getDic = definitions.GetDic()
