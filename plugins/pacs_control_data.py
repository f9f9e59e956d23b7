"""The built-in control commands that delete, move and take in objects
(manual appendix 6: delete, DICOM move, communication and conversion options).

Only instances live here; ``getPlugins(IControlCommand, plugins)`` finds
them as it finds installed ones.
"""

from pacscore.control import conversion, data, deletes, grab, moves, pictures

deleteImageFile = deletes.DeleteImageFile()
deletePatient = deletes.DeletePatient()
deletPatient = deletes.DeletePatient(
    "deletpatient", "--deletpatient:patid  Delete given patient from server (the manual's spelling)")
deleteStudy = deletes.DeleteStudy()
deleteStudies = deletes.DeleteStudies()
deleteSeries = deletes.DeleteSeries()
deleteImage = deletes.DeleteImage()
deleteImageFromDB = deletes.DeleteImageFromDB()
deleteSopFromDB = deletes.DeleteSopFromDB()
deletePatientFromDB = deletes.DeletePatientFromDB()
deleteStudyFromDB = deletes.DeleteStudyFromDB()
deleteSeriesFromDB = deletes.DeleteSeriesFromDB()

movePatient = moves.MovePatient()
moveStudy = moves.MoveStudy()
moveStudies = moves.MoveStudies()
moveAccession = moves.MoveAccession()
moveSeries = moves.MoveSeries()

addImageFile = data.AddImageFile()
loadAndDeleteDir = data.LoadAndDeleteDir()
loadHL7 = data.LoadHL7()
dumpHeader = data.DumpHeader()
forward = data.Forward()
prefetch = data.Prefetch()

countFrames = conversion.CountFrames()
extractFrames = conversion.ExtractFrames()
uncompress = conversion.Uncompress()
testCompress = conversion.TestCompress()
convertToGif = pictures.ConvertToGif()
convertToBmp = pictures.ConvertToBmp()
convertToJpg = pictures.ConvertToJpg()
convertToDicom = pictures.ConvertToDicom()

grabImagesFromServer = grab.GrabImagesFromServer()
